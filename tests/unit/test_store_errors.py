"""SQLiteEventStore.append raises StoreError subclasses, never raw sqlite3 errors (which they also are)."""

from __future__ import annotations

import sqlite3

import pytest
from test_integrity import conversation

from ledgerbus.errors import StoreConflict, StoreError, StoreUnavailable
from ledgerbus.eventstore.sqlite import SQLiteEventStore


def test_append_to_a_read_only_ledger_is_store_unavailable(tmp_path):
    SQLiteEventStore(tmp_path / "r.db").close()
    store = SQLiteEventStore(tmp_path / "r.db", readonly=True)
    with pytest.raises(StoreUnavailable) as info:
        store.append_envelopes(conversation(1))
    assert isinstance(info.value, StoreError) and isinstance(info.value, sqlite3.OperationalError)
    assert "r.db" in str(info.value) and "readonly" in str(info.value)
    store.close()


def test_append_while_another_writer_holds_the_file_is_store_unavailable(tmp_path):
    store = SQLiteEventStore(tmp_path / "l.db")
    other = sqlite3.connect(tmp_path / "l.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    store.db.conn.execute("PRAGMA busy_timeout=50")  # give up on the lock quickly
    try:
        with pytest.raises(StoreUnavailable, match="locked"):
            store.append_envelopes(conversation(1))
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert store.append_envelopes(conversation(1)) > 0  # the failed batch left nothing half-done
    store.close()


def test_an_event_a_constraint_refuses_is_store_conflict_and_nothing_is_written(tmp_path):
    store = SQLiteEventStore(tmp_path / "c.db")
    store.db.conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.sender = 'worker'"
                          " BEGIN SELECT RAISE(ABORT, 'refused by a constraint'); END")
    events = conversation(1)
    with pytest.raises(StoreConflict) as info:
        store.append_envelopes(events)
    assert isinstance(info.value, sqlite3.IntegrityError) and "refused by a constraint" in str(info.value)
    assert list(store.read()) == []
    store.close()
