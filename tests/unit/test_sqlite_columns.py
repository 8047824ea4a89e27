"""The ledger's SQL face: the `envelopes` view reads payload, error, task and causation ids and attempt out of
the envelope, in new and older ledgers; a new events table neither stores nor computes them on an append."""

from __future__ import annotations

import sqlite3

import msgspec
import sqlite_utils
from test_integrity import conversation

from ledgerbus.eventstore.base import StoredEvent
from ledgerbus.eventstore.sqlite import SQLiteEventStore
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import ErrorInfo, answer, new_request


def _with_error() -> list:
    req = new_request(sender="client", recipient="worker", capability="work.do", payload={"text": "é", "n": 2.5})
    return [req, answer(req, Action.ERROR, error=ErrorInfo(code="HANDLER_FAILED", message="boom"))]


def _ledger_with_error(tmp_path) -> sqlite3.Connection:
    """A new ledger holding a REQUEST and its ERROR, opened with plain sqlite3 as a person would."""
    path = tmp_path / "l.db"
    store = SQLiteEventStore(path)
    store.append_envelopes(_with_error())
    store.close()
    return sqlite3.connect(path)


_QUERY = ("SELECT action, json_extract(payload, '$.text'), json_extract(payload, '$.n'),"
          " json_extract(error, '$.code'), json_extract(envelope, '$.sender'), task_id = conversation_id,"
          " causation_id IS NULL, attempt FROM envelopes ORDER BY position")
_ROWS = [("REQUEST", "é", 2.5, None, "client", 1, 1, 1), ("ERROR", None, None, "HANDLER_FAILED", "worker", 1, 0, 1)]
_VIEWED = {"task_id", "causation_id", "attempt", "payload", "error"}


def _columns(conn: sqlite3.Connection) -> set[str]:
    return {r[1] for r in conn.execute("PRAGMA table_xinfo(events)")}


def test_the_view_reads_out_what_the_events_table_does_not_hold(tmp_path):
    conn = _ledger_with_error(tmp_path)
    assert conn.execute(_QUERY).fetchall() == _ROWS
    # Not even as generated columns: SQLite computes those on every INSERT.
    assert not _columns(conn) & _VIEWED
    # An envelope from another client may leave out a field that has a default.
    with conn:
        conn.execute("UPDATE events SET envelope = CAST(json_remove(CAST(envelope AS TEXT), '$.attempt') AS BLOB)")
    assert conn.execute("SELECT attempt FROM envelopes").fetchall() == [(1,), (1,)]
    conn.close()


def _virtual_layout(path) -> None:
    """The events table as the release before created it: payload and error VIRTUAL generated columns."""
    sqlite_utils.Database(path).conn.executescript("""
        CREATE TABLE events (position INTEGER PRIMARY KEY, id TEXT NOT NULL, conversation_id TEXT NOT NULL,
            task_id TEXT NOT NULL, causation_id TEXT, sender TEXT NOT NULL, recipient TEXT NOT NULL,
            action TEXT NOT NULL, capability TEXT NOT NULL, attempt INTEGER NOT NULL, timestamp INTEGER NOT NULL,
            envelope BLOB NOT NULL, prev_hash TEXT, hash TEXT,
            payload TEXT GENERATED ALWAYS AS (json_extract(CAST(envelope AS TEXT), '$.payload')) VIRTUAL,
            error TEXT GENERATED ALWAYS AS (json_extract(CAST(envelope AS TEXT), '$.error')) VIRTUAL);
        CREATE UNIQUE INDEX idx_events_id ON events (id);
        CREATE INDEX idx_events_conversation_id_position ON events (conversation_id, position);
    """)


def test_a_ledger_with_virtual_payload_columns_drops_them_and_keeps_its_rows(tmp_path):
    path = tmp_path / "virtual.db"
    _virtual_layout(path)
    first = conversation(1)
    # Written as the release before wrote it (its own store appended these rows).
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany("INSERT INTO events (position, id, conversation_id, task_id, causation_id, sender, recipient,"
                         " action, capability, attempt, timestamp, envelope) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                         [(i + 1, e.id, e.conversation_id, e.task_id, e.causation_id, e.sender, e.recipient,
                           e.action.value, e.capability, e.attempt, e.timestamp, msgspec.json.encode(e))
                          for i, e in enumerate(first)])
    conn.close()
    store = SQLiteEventStore(path)
    store.rechain()  # the rows above carry no chain links; the release before would have written them
    errs = _with_error()
    assert store.append_envelopes(errs) == 2
    assert [ev.envelope for ev in store.read()] == first + errs
    assert store.verify().ok
    store.close()
    conn = sqlite3.connect(path)
    # The generated columns are gone; the stored ones go on being written.
    assert _columns(conn) & _VIEWED == {"task_id", "causation_id", "attempt"}
    assert conn.execute("SELECT task_id, attempt FROM events ORDER BY position DESC LIMIT 1").fetchone() == (
        errs[1].task_id, 1)
    assert conn.execute(_QUERY.replace("ORDER BY position", "ORDER BY position DESC LIMIT 2")).fetchall() == _ROWS[::-1]
    assert conn.execute("SELECT json_extract(payload, '$.n') FROM envelopes WHERE position = 1").fetchone() == (
        first[0].payload["n"],)
    conn.close()


def _old_layout(path) -> None:
    """The events table as releases before virtual columns created it (payload and error stored)."""
    db = sqlite_utils.Database(path)
    db["events"].create({"position": int, "id": str, "conversation_id": str, "task_id": str, "causation_id": str,
                         "sender": str, "recipient": str, "action": str, "capability": str, "attempt": int,
                         "timestamp": int, "payload": str, "error": str, "envelope": bytes, "prev_hash": str,
                         "hash": str}, pk="position")
    db["events"].create_index(["id"], unique=True)
    db["events"].create_index(["conversation_id", "position"])
    db.conn.close()


def test_an_older_ledger_goes_on_storing_its_payload_columns(tmp_path):
    path = tmp_path / "old.db"
    _old_layout(path)
    store = SQLiteEventStore(path)
    envs = conversation(1) + _with_error()
    assert store.append_envelopes(envs) == len(envs)
    assert [ev.envelope for ev in store.read()] == envs
    assert store.verify().ok
    store.close()
    conn = sqlite3.connect(path)
    got = conn.execute("SELECT payload, error FROM events ORDER BY position DESC LIMIT 2").fetchall()
    assert got[0][1] is not None and '"HANDLER_FAILED"' in got[0][1]
    assert got[1] == ('{"text":"é","n":2.5}', None)
    assert conn.execute(_QUERY.replace("ORDER BY position", "ORDER BY position DESC LIMIT 2")).fetchall() == _ROWS[::-1]
    conn.close()


def test_a_batch_reaching_back_into_stored_positions_skips_them(tmp_path):
    store = SQLiteEventStore(tmp_path / "r.db")
    envs = conversation(2)
    evs = [StoredEvent(i + 1, e) for i, e in enumerate(envs)]
    assert store.append(evs[:5]) == 5
    # A re-read after a restart: the stored part again (same positions), then the rest.
    assert store.append(evs[2:]) == len(envs) - 5
    # Another envelope at a position already taken is not written over it.
    other = conversation(1)[0]
    assert store.append([StoredEvent(3, other)]) == 0
    assert [ev.envelope.id for ev in store.read()] == [e.id for e in envs] and store.verify().ok
    store.close()


def test_a_damaged_envelope_leaves_its_row_selectable(tmp_path):
    conn = _ledger_with_error(tmp_path)
    with conn:
        conn.execute("UPDATE events SET envelope = ? WHERE position = 1", (b"{garbage",))
    assert conn.execute("SELECT envelope, payload, error FROM envelopes WHERE position = 1").fetchone() == (
        "{garbage", None, None)
    conn.close()
