"""The events table's query columns: payload and error stay queryable with SQL, in new and older ledgers."""

from __future__ import annotations

import sqlite3

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


def test_payload_and_error_are_queryable_without_being_stored_twice(tmp_path):
    conn = _ledger_with_error(tmp_path)
    rows = conn.execute("SELECT action, json_extract(payload, '$.text'), json_extract(payload, '$.n'),"
                        " json_extract(error, '$.code') FROM events ORDER BY position").fetchall()
    assert rows == [("REQUEST", "é", 2.5, None), ("ERROR", None, None, "HANDLER_FAILED")]
    hidden = {r[1]: r[6] for r in conn.execute("PRAGMA table_xinfo(events)")}
    assert hidden["payload"] != 0 and hidden["error"] != 0  # generated from the envelope, not written
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
    conn.close()
    assert got[0][1] is not None and '"HANDLER_FAILED"' in got[0][1]
    assert got[1] == ('{"text":"é","n":2.5}', None)


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
    assert conn.execute("SELECT envelope, payload, error FROM events WHERE position = 1").fetchone() == (
        b"{garbage", None, None)
    conn.close()
