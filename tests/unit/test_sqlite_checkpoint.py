"""The SQLite ledger's WAL checkpoints on their own thread: they run beside the appends, keep the WAL
bounded with the writer's own checkpoint, end when idle or closed, and lose nothing."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from test_integrity import conversation

from ledgerbus.eventstore.base import StoredEvent
from ledgerbus.eventstore.sqlite import SQLiteEventStore
from ledgerbus.eventstore.sqlite_checkpoint import Checkpointer

_NAME = "ledgerbus-sqlite-checkpoint"


def ours(before: set[threading.Thread]) -> set[threading.Thread]:
    """Checkpoint threads alive now that were not before (other tests' stores may still have theirs)."""
    return {t for t in threading.enumerate() if t.name == _NAME and t not in before}


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def events(start: int, count: int) -> Iterator[StoredEvent]:
    pos = start
    while pos < start + count:
        for env in conversation(3):
            yield StoredEvent(pos, env)
            pos += 1


def append(store: SQLiteEventStore, count: int, batch: int = 1000, after: Callable[[], None] = lambda: None) -> None:
    buf: list[StoredEvent] = []
    for ev in events(store.last_position() + 1, count):
        buf.append(ev)
        if len(buf) == batch:
            store.append(buf)
            buf = []
            after()
    store.append(buf)


def _wal_db(path: Path) -> sqlite3.Connection:
    """A WAL database whose writer never checkpoints itself: only the Checkpointer copies the WAL."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE t (x BLOB)")
    return conn


def test_the_thread_copies_the_wal_into_the_database_file(tmp_path):
    path = tmp_path / "w.db"
    conn = _wal_db(path)
    conn.executemany("INSERT INTO t VALUES (?)", [(b"x" * 1000,) for _ in range(2000)])
    before = path.stat().st_size
    ckpt = Checkpointer(path, every=100)
    ckpt.appended(99)
    assert not ckpt.running  # not due yet
    ckpt.appended(1)
    wait_for(lambda: ckpt.done >= 1)
    assert path.stat().st_size > before + 1_000_000  # the rows' pages are in the database file now
    ckpt.close()
    conn.close()


def test_an_idle_thread_ends_and_the_next_checkpoint_starts_another(tmp_path):
    path = tmp_path / "w.db"
    conn = _wal_db(path)
    before = set(threading.enumerate())
    ckpt = Checkpointer(path, every=1, idle=0.05)
    ckpt.appended(1)
    wait_for(lambda: ckpt.done == 1 and not ckpt.running)
    wait_for(lambda: not ours(before))
    ckpt.appended(1)
    wait_for(lambda: ckpt.done == 2)
    ckpt.close()
    assert not ckpt.running and not ours(before)
    ckpt.appended(1)  # closed: starts nothing
    assert not ckpt.running and ckpt.done == 2
    conn.close()


def test_the_store_checkpoints_beside_its_appends_and_loses_nothing(tmp_path):
    path = tmp_path / "l.db"
    before = set(threading.enumerate())
    store = SQLiteEventStore(path)
    size = path.stat().st_size
    # Well under the writer's own automatic checkpoint (1,000 pages of 16 KB): only the thread copies.
    append(store, 6000)
    wait_for(lambda: path.stat().st_size > size + 1_000_000)
    assert ours(before)
    store.close()
    assert not ours(before)
    reopened = SQLiteEventStore(path, readonly=True)
    assert reopened.count() == 6000 and reopened.verify().ok
    reopened.close()


def test_the_wal_stays_bounded_under_sustained_appends(tmp_path):
    # A checkpoint beside a writer cannot start the WAL again from its beginning; the writer's own one
    # must still do so, or the WAL would grow with every append (here to about 60 MB).
    path = tmp_path / "l.db"
    wal = Path(f"{path}-wal")
    store = SQLiteEventStore(path)
    high = 0

    def measure() -> None:
        nonlocal high
        high = max(high, wal.stat().st_size)

    append(store, 72_000, after=measure)
    store.close()
    assert 0 < high < 40 * 2**20
