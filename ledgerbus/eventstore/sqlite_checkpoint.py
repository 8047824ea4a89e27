"""WAL checkpoints of the SQLite ledger on a thread of their own, beside the appends.

SQLite checkpoints automatically inside the commit that takes the WAL past `wal_autocheckpoint` pages:
the appending thread then copies the WAL into the database file and waits for two fsyncs, about 1 µs of
every event's append. Asked every few thousand events, this thread does most of that copying while the
appends go on (PASSIVE: it never blocks a writer or a reader, and it waits on the disk with the GIL
released). The writer's own automatic checkpoint stays: it copies the little appended meanwhile and lets
SQLite start the WAL again from its beginning, which a checkpoint running beside a writer cannot. So the
WAL stays as bounded as it was, and nothing depends on this thread keeping up or staying alive.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger(__name__)


class Checkpointer:
    """Runs `PRAGMA wal_checkpoint(PASSIVE)` on its own connection once `every` events were appended.

    The thread starts with the first checkpoint due and ends after `idle` seconds without one (a store
    nobody closes leaves no thread behind); the next due checkpoint starts it again.
    """

    def __init__(self, path: Path, *, every: int = 5000, idle: float = 5.0) -> None:
        self.path = path
        self.every = every
        self.idle = idle
        self.done = 0  # checkpoints run, for tests and curious readers
        self._pending = 0
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def running(self) -> bool:
        with self._lock:
            return self._thread is not None

    def appended(self, events: int) -> None:
        """Count committed events; at `every` of them, have the thread checkpoint."""
        self._pending += events
        if self._pending < self.every:
            return
        self._pending = 0
        with self._lock:
            if self._closed:
                return
            self._wake.set()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ledgerbus-sqlite-checkpoint", daemon=True)
                self._thread.start()

    def close(self) -> None:
        """Stop the thread, letting a checkpoint under way finish."""
        with self._lock:
            self._closed = True
            thread = self._thread
            self._wake.set()
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(self.path, check_same_thread=False)
            while self._due():
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.done += 1
                except sqlite3.Error as exc:
                    # Nothing is lost: the frames stay in the WAL, and the writer's own checkpoint copies them.
                    log.warning("background checkpoint of %s failed (%s); the appends will checkpoint", self.path, exc)
        except sqlite3.Error as exc:
            log.warning("background checkpoints of %s stopped (%s); the appends will checkpoint", self.path, exc)
        finally:
            with self._lock:
                if self._thread is threading.current_thread():
                    self._thread = None
            if conn is not None:
                conn.close()

    def _due(self) -> bool:
        """Wait for the next checkpoint; False once closed, or after `idle` seconds with none asked for."""
        if not self._wake.wait(self.idle):
            with self._lock:  # appended() starts no second thread while this one decides to end
                if not self._wake.is_set():
                    self._thread = None
                    return False
        self._wake.clear()
        return not self._closed
