"""Time is the observer's: the fold takes its times from when an event was observed (stored by JetStream,
or received by the orchestrator), handed in as data, never from the sender's `timestamp`."""

from __future__ import annotations

import sqlite3

import msgspec
import pytest

from ledger_histories import History

from ledgerbus.eventstore.base import StoredEvent
from ledgerbus.eventstore.fold import ConversationState, apply, fold
from ledgerbus.eventstore.sqlite import SQLiteEventStore
from ledgerbus.orchestrator.policy import TaskPolicy
from ledgerbus.orchestrator.stalls import check_task, find_stalls, next_check_ms

T0 = 1_000_000
HOUR = 3_600_000
POLICY = TaskPolicy(receipt_timeout=2.0, stall_after=10.0, timeout=30.0)


def skewed(skew_ms: int) -> list[StoredEvent]:
    """REQUEST at T0 from the orchestrator; the agent's ACK stored at T0+100, stamped `skew_ms` off."""
    h = History(start_ms=T0, step_ms=0)
    req = h.request("t1", "research")
    h.at(T0 + 100 + skew_ms).ack(req)
    stored = [T0, T0 + 100]
    return [StoredEvent(ev.position, ev.envelope, stored_at=at) for ev, at in zip(h.events, stored)]


@pytest.mark.parametrize("skew_ms", [+HOUR, -HOUR, 0], ids=["hour-ahead", "hour-behind", "on-time"])
def test_stall_window_runs_on_the_stored_times_whatever_the_agents_clock(skew_ms: int) -> None:
    t = fold(skewed(skew_ms)).tasks["t1"]
    assert (t.sent_at, t.acked_at, t.last_activity_at) == (T0, T0 + 100, T0 + 100)
    assert check_task(t, T0 + 10_099, POLICY) is None  # an hour behind: not stalled at once
    assert next_check_ms(t, POLICY) == T0 + 10_100
    assert check_task(t, T0 + 10_100, POLICY) == "STALLED"  # an hour ahead: stalled in the window all the same
    [stall] = find_stalls([fold(skewed(skew_ms))], T0 + 10_100, lambda c, a: POLICY)
    assert (stall.code, stall.silent_ms) == ("STALLED", 10_000)


def test_without_stored_times_the_envelopes_stand_in() -> None:
    # Hand-built histories and mirrors recorded before stored times: the sender's clock is all there is.
    events = [StoredEvent(ev.position, ev.envelope) for ev in skewed(+HOUR)]
    t = fold(events).tasks["t1"]
    assert t.acked_at == T0 + 100 + HOUR


def test_apply_takes_the_observed_time_as_data() -> None:
    h = History(start_ms=T0, step_ms=0)
    req = h.request("t1", "research")
    h.at(T0 + HOUR).ack(req)
    h.response(req)
    st = ConversationState(conversation_id=h.cid)
    for env, seen in zip(h.envelopes, (T0, T0 + 40, T0 + 90)):
        apply(st, env, 0, seen)
    t = st.tasks["t1"]
    assert (t.requested_at, t.sent_at, t.acked_at, t.finished_at, t.duration_ms) == (T0, T0, T0 + 40, T0 + 90, 90)
    assert (st.started_at, st.last_timestamp) == (T0, T0 + 90)
    # The same envelopes observed at other moments: the same statuses, other times (the fold stays pure).
    again = fold([StoredEvent(i + 1, e, stored_at=T0 + i) for i, e in enumerate(h.envelopes)])
    assert again.tasks["t1"].status is t.status and again.tasks["t1"].duration_ms == 2


# -- the SQLite mirror keeps JetStream's stored time -------------------------------------------------

def test_the_sqlite_mirror_keeps_stored_times(tmp_path) -> None:
    store = SQLiteEventStore(tmp_path / "l.db")
    store.append(skewed(+HOUR))
    assert [ev.stored_at for ev in store.read()] == [T0, T0 + 100]
    assert fold(store.read()).tasks["t1"].acked_at == T0 + 100
    store.close()
    ro = SQLiteEventStore(tmp_path / "l.db", readonly=True)
    assert [ev.stored_at for ev in ro.read()] == [T0, T0 + 100]
    ro.close()


@pytest.mark.skipif(sqlite3.sqlite_version_info < (3, 35), reason="DROP COLUMN (to make an old ledger) needs SQLite 3.35")
def test_a_ledger_from_before_stored_times_reads_and_is_brought_forward(tmp_path) -> None:
    path = tmp_path / "old.db"
    store = SQLiteEventStore(path)
    store.append([msgspec.structs.replace(ev, stored_at=None) for ev in skewed(0)])
    store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP VIEW envelopes")  # the view names every column it reads; stored_at is not one
        conn.execute("ALTER TABLE events DROP COLUMN stored_at")
    ro = SQLiteEventStore(path, readonly=True)
    assert [ev.stored_at for ev in ro.read()] == [None, None]  # read as before: the envelopes' times stand in
    assert fold(ro.read()).tasks["t1"].acked_at == T0 + 100
    ro.close()
    rw = SQLiteEventStore(path)  # opened to write: gets the column, keeps every row
    h = History("conv2", start_ms=T0 + 5_000, step_ms=0)
    h.request("t2", "writing")
    rw.append([StoredEvent(10, h.envelopes[0], stored_at=T0 + 5_007)])
    assert [ev.stored_at for ev in rw.read()] == [None, None, T0 + 5_007]
    assert rw.verify().ok
    rw.close()
