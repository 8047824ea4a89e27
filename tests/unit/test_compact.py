"""Compaction keeps finished conversations' state and the ability to verify; running ones stay whole."""

from __future__ import annotations

import io
import sqlite3

from test_integrity import conversation

from ledgerbus.eventstore import compact as compact_module
from ledgerbus.eventstore.base import StoredEvent
from ledgerbus.eventstore.compact import compact, snapshot
from ledgerbus.eventstore.fold import fold
from ledgerbus.eventstore.integrity import IssueKind
from ledgerbus.eventstore.jsonl import export_store, import_into_store
from ledgerbus.eventstore.sqlite import SQLiteEventStore
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import ErrorInfo, answer


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


def test_an_event_appended_while_compacting_is_kept_not_deleted(tmp_path, monkeypatch):
    path = tmp_path / "c.db"
    store = SQLiteEventStore(path)  # `ledgerbus compact`
    recorder = SQLiteEventStore(path)  # the recorder, writing through its own connection
    conv = conversation(1)
    store.append_envelopes(conv)
    late = answer(conv[2], Action.ERROR, error=ErrorInfo(code="INTERNAL", message="late"))
    real_fold = compact_module.fold

    def fold_while_the_recorder_appends(events):
        state = real_fold(events)
        # Lands after compact() read the conversation and before it removes it.
        assert recorder.append([StoredEvent(recorder._stored_end() + 1, late)]) == 1
        return state

    monkeypatch.setattr(compact_module, "fold", fold_while_the_recorder_appends)
    report = compact(store)
    monkeypatch.undo()
    assert report.conversations == 0  # it moved under the fold: left whole for the next run
    assert [ev.envelope.id for ev in store.read()] == [e.id for e in conv + [late]]
    assert store.verify().ok

    report = compact(store)  # the next run takes it all, the late event included
    assert (report.conversations, report.events) == (1, len(conv) + 1)
    assert store.count() == 0
    assert store.db.conn.execute("SELECT events, last_position FROM snapshots").fetchone() == (len(conv) + 1,
                                                                                              len(conv) + 1)
    assert store.verify().ok
    recorder.close()
    store.close()


def test_importing_a_compacted_export_twice_keeps_the_chain_head(tmp_path):
    src = SQLiteEventStore(tmp_path / "src.db")
    conv = conversation(1)
    src.append_envelopes(conv)
    compact(src)
    late = answer(conv[2], Action.ERROR, error=ErrorInfo(code="INTERNAL", message="late"))
    # After compaction the conversation's chain goes on from its compacted links.
    assert src.append([StoredEvent(src._stored_end() + 1, late)]) == 1
    out = io.BytesIO()
    export_store(src, out)
    lines = out.getvalue().splitlines(keepends=True)

    dst = SQLiteEventStore(tmp_path / "dst.db")
    import_into_store(dst, lines)
    assert dst.heads() == src.heads() and dst.verify().ok
    again = import_into_store(dst, lines)  # the same file again: nothing new, nothing moved
    assert again.new == 0
    assert dst.heads() == src.heads()
    assert dst.verify().ok
    src.close()
    dst.close()


def test_envelopes_appended_after_the_tail_was_compacted_are_all_stored(tmp_path):
    store = SQLiteEventStore(tmp_path / "c.db")
    done = conversation(1)
    store.append_envelopes(done)
    compact(store)  # the whole ledger, its last position included, is now compacted
    later = conversation(1)
    assert store.append_envelopes(later) == len(later)
    assert [ev.envelope.id for ev in store.read()] == [e.id for e in later]
    assert [ev.position for ev in store.read()] == list(range(len(done) + 1, len(done) + len(later) + 1))
    assert store.verify().ok
    store.close()
