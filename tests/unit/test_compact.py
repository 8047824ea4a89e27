"""Compaction keeps finished conversations' state and the ability to verify; running ones stay whole."""

from __future__ import annotations

import sqlite3

from test_integrity import conversation

from ledgerbus.eventstore.compact import compact, snapshot
from ledgerbus.eventstore.fold import fold
from ledgerbus.eventstore.integrity import IssueKind
from ledgerbus.eventstore.sqlite import SQLiteEventStore


def test_compact_snapshots_finished_conversations_and_still_verifies(tmp_path):
    store = SQLiteEventStore(tmp_path / "c.db")
    done, running = conversation(3), conversation(2)[:-1]  # the second never got its final RESPONSE
    store.append_envelopes(done + running)
    expected = fold(done)
    report = compact(store, vacuum=True)
    assert (report.conversations, report.events, report.skipped_running) == (1, len(done), 1)
    assert store.count() == len(running)
    assert store.verify().ok
    snap = snapshot(store, done[0].conversation_id)
    assert snap is not None and snap.status == expected.status and snap.tasks.keys() == expected.tasks.keys()
    # The same envelope arriving again (a redelivery) is still recognised as already recorded.
    assert store.append_envelopes(done[:1]) == 0
    store.close()

    conn = sqlite3.connect(tmp_path / "c.db")
    with conn:
        conn.execute("UPDATE snapshots SET state = replace(state, 'DONE', 'FAILED')")
    conn.close()
    store = SQLiteEventStore(tmp_path / "c.db")
    assert [i.kind for i in store.verify().issues] == [IssueKind.SNAPSHOT]
    store.close()


def test_compacted_link_removed_is_reported(tmp_path):
    store = SQLiteEventStore(tmp_path / "c.db")
    done = conversation(2)
    store.append_envelopes(done)
    compact(store)
    store.close()
    conn = sqlite3.connect(tmp_path / "c.db")
    with conn:
        conn.execute("DELETE FROM compacted WHERE position = 3")
    conn.close()
    store = SQLiteEventStore(tmp_path / "c.db")
    assert [(i.kind, i.position) for i in store.verify().issues] == [(IssueKind.MISSING, 4)]
    store.close()
