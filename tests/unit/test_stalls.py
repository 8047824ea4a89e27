"""Stall detection on hand-written ledgers: no receipt, ACK then silence, progress, deadlines, timeouts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledgerbus.eventstore.fold import ConversationState, TaskState, TaskStatus, fold
from ledgerbus.orchestrator.policy import TaskPolicy
from ledgerbus.orchestrator.stalls import Stall, check_task, find_stalls, next_check_ms

from ledger_histories import ORCH, History

T0 = 1_000_000
# The defaults of DESIGN.md, spelled out so the expected times below do not move with the code's defaults.
POLICY = TaskPolicy(receipt_timeout=2.0, stall_after=10.0, timeout=30.0)


def task_of(h: History, task_id: str = "t1") -> TaskState:
    return fold(h.envelopes).tasks[task_id]


def sent(deadline: int | None = None) -> tuple[History, TaskState]:
    h = History(start_ms=T0, step_ms=0)
    h.request("t1", "research", deadline=deadline)
    return h, task_of(h)


# -- no receipt ---------------------------------------------------------------------------------

def test_no_receipt() -> None:
    _, t = sent()
    assert check_task(t, T0, POLICY) is None
    assert check_task(t, T0 + 1_999, POLICY) is None
    assert check_task(t, T0 + 2_000, POLICY) == "NO_RECEIPT"
    assert next_check_ms(t, POLICY) == T0 + 2_000


def test_ack_in_time_is_not_a_missing_receipt() -> None:
    h, _ = sent()
    h.at(T0 + 1_500).ack(h.envelopes[0])
    t = task_of(h)
    assert t.status is TaskStatus.ACKED
    assert check_task(t, T0 + 5_000, POLICY) is None
    assert next_check_ms(t, POLICY) == T0 + 1_500 + 10_000


# -- ACK, then silence; progress keeps it alive -------------------------------------------------

def test_ack_then_silence_is_a_stall() -> None:
    h, _ = sent()
    h.at(T0 + 100).ack(h.envelopes[0])
    t = task_of(h)
    assert check_task(t, T0 + 10_099, POLICY) is None
    assert check_task(t, T0 + 10_100, POLICY) == "STALLED"
    assert next_check_ms(t, POLICY) == T0 + 10_100


def test_progress_keeps_it_alive() -> None:
    h, _ = sent()
    req = h.envelopes[0]
    h.at(T0 + 100).ack(req)
    for beat in range(1, 3):  # a heartbeat every 9 s: never 10 s of silence
        h.at(T0 + 100 + beat * 9_000).progress(req)
    t = task_of(h)
    last = T0 + 100 + 18_000
    assert t.last_activity_at == last
    assert check_task(t, last + 9_999, POLICY) is None
    assert next_check_ms(t, POLICY) == last + 10_000
    assert check_task(t, last + 10_000, POLICY) == "STALLED"


def test_a_second_instance_taking_a_redelivered_request_is_a_sign_of_life() -> None:
    h, _ = sent()
    req = h.envelopes[0]
    h.at(T0 + 100).ack(req)  # instance 1 takes it, then dies
    h.at(T0 + 6_000).ack(req)  # JetStream redelivers the same attempt to instance 2
    t = task_of(h)
    assert (t.status, t.acked_at, t.attempt) == (TaskStatus.ACKED, T0 + 100, 1)
    assert check_task(t, T0 + 15_999, POLICY) is None
    assert next_check_ms(t, POLICY) == T0 + 16_000
    assert check_task(t, T0 + 16_000, POLICY) == "STALLED"


def test_progress_does_not_extend_the_timeout() -> None:
    h, _ = sent()
    req = h.envelopes[0]
    h.at(T0 + 100).ack(req)
    for beat in range(1, 4):
        h.at(T0 + beat * 8_000).progress(req)  # alive at 8, 16, 24 s
    t = task_of(h)
    assert check_task(t, T0 + 29_999, POLICY) is None
    assert next_check_ms(t, POLICY) == T0 + 30_000  # the timeout comes before the stall window ends
    assert check_task(t, T0 + 30_000, POLICY) == "TIMED_OUT"


# -- deadline and timeout -----------------------------------------------------------------------

def test_deadline() -> None:
    _, t = sent(deadline=T0 + 1_000)
    assert check_task(t, T0 + 1_000, POLICY) is None  # the deadline itself is still in time
    assert next_check_ms(t, POLICY) == T0 + 1_001
    assert check_task(t, T0 + 1_001, POLICY) == "DEADLINE_EXCEEDED"


def test_timeout_wins_over_everything_else() -> None:
    _, t = sent(deadline=T0 + 1_000)
    # At 30 s the task is unacknowledged, past its deadline and past its timeout: the timeout is reported.
    assert check_task(t, T0 + 30_000, POLICY) == "TIMED_OUT"
    assert check_task(t, T0 + 20_000, POLICY) == "DEADLINE_EXCEEDED"


def test_deadline_is_reported_before_a_missing_receipt() -> None:
    _, t = sent(deadline=T0 + 500)
    assert check_task(t, T0 + 2_500, POLICY) == "DEADLINE_EXCEEDED"


def test_per_task_policy() -> None:
    fast = TaskPolicy(receipt_timeout=0.2, stall_after=0.5, timeout=1.0)
    h, t = sent()
    assert check_task(t, T0 + 200, fast) == "NO_RECEIPT"
    h.at(T0 + 100).ack(h.envelopes[0])
    t = task_of(h)
    assert check_task(t, T0 + 599, fast) is None
    assert check_task(t, T0 + 600, fast) == "STALLED"


# -- finished tasks are never stalled -----------------------------------------------------------

@pytest.mark.parametrize("end", ["response", "error", "stalled", "timed_out"])
def test_finished_tasks_are_not_checked(end: str) -> None:
    h, _ = sent()
    req = h.envelopes[0]
    h.ack(req)
    if end == "response":
        h.response(req)
    elif end == "error":
        h.error(req)
    else:
        h.decision(req, end.upper())
    t = task_of(h)
    assert t.finished
    assert check_task(t, T0 + 10**9, POLICY) is None
    assert next_check_ms(t, POLICY) is None


def test_a_retry_starts_the_clocks_again() -> None:
    h = History(start_ms=T0, step_ms=0)
    r1 = h.request("t1", "research", attempt=1)
    h.at(T0 + 100).ack(r1)
    h.at(T0 + 10_100).decision(r1, "STALLED", retryable=True)
    h.decision(r1, "RETRY_SCHEDULED")
    r2_at = T0 + 11_000
    h.at(r2_at).request("t1", "research", attempt=2)
    t = task_of(h)
    assert t.status is TaskStatus.SENT and t.attempt == 2
    assert check_task(t, r2_at + 1_999, POLICY) is None
    assert next_check_ms(t, POLICY) == r2_at + 2_000
    assert check_task(t, r2_at + 2_000, POLICY) == "NO_RECEIPT"
    # Silence is measured from the new REQUEST, not from the old attempt's ACK.
    [stall] = find_stalls([fold(h.envelopes)], r2_at + 2_000, lambda c, a: POLICY)
    assert (stall.code, stall.silent_ms, stall.attempt) == ("NO_RECEIPT", 2_000, 2)


# -- next_check_ms is exact ---------------------------------------------------------------------

limits = st.integers(1, 60_000).map(lambda ms: ms / 1000)  # policies in seconds, to the millisecond


@settings(max_examples=300, deadline=None)
@given(
    receipt=limits, stall=limits, timeout=limits,
    ack_after=st.none() | st.integers(0, 70_000),
    beats=st.lists(st.integers(0, 70_000), max_size=3),
    deadline=st.none() | st.integers(0, 70_000),
)
def test_next_check_is_the_first_moment_the_answer_changes(
        receipt: float, stall: float, timeout: float, ack_after: int | None, beats: list[int],
        deadline: int | None) -> None:
    policy = TaskPolicy(receipt_timeout=receipt, stall_after=stall, timeout=timeout)
    h = History(start_ms=T0, step_ms=0)
    req = h.request("t1", "research", deadline=None if deadline is None else T0 + deadline)
    if ack_after is not None:
        h.at(T0 + ack_after).ack(req)
        for b in sorted(beats):
            h.at(T0 + ack_after + b).progress(req)
    t = task_of(h)
    due = next_check_ms(t, policy)
    assert due is not None
    start = max(e.timestamp for e in h.envelopes)  # a timer is set after the last event was seen
    if due > start:
        assert check_task(t, due - 1, policy) is None
    assert check_task(t, max(due, start), policy) is not None


# -- find_stalls over many conversations ---------------------------------------------------------

def _conversation(cid: str, start: int) -> History:
    h = History(cid, start_ms=start, step_ms=0)
    root = h.root()
    quiet = h.request("quiet", "research")  # never ACKed
    h.ack(silent := h.request("silent", "writing", capability="writing.draft"))  # ACKed, then nothing
    busy = h.request("busy", "editor", capability="editor.edit")
    h.ack(busy)
    done = h.request("done", "research")
    h.ack(done)
    h.response(done)
    del root, quiet, silent
    return h


def test_find_stalls_reports_each_limit_with_its_agent() -> None:
    a = _conversation("ca", T0)
    a.at(T0 + 9_000).progress(a.envelopes[-5])  # busy: a heartbeat at 9 s
    found = find_stalls([fold(a.envelopes)], T0 + 12_000, lambda cap, agent: POLICY)
    by_task = {s.task_id: s for s in found}
    assert set(by_task) == {"quiet", "silent"}
    assert by_task["quiet"] == Stall("ca", "quiet", "research", "research.search", "NO_RECEIPT", 12_000, 1)
    assert by_task["silent"] == Stall("ca", "silent", "writing", "writing.draft", "STALLED", 12_000, 1)


def test_find_stalls_uses_the_policy_of_each_task() -> None:
    a = _conversation("ca", T0)
    seen: list[tuple[str, str]] = []

    def policy_for(capability: str, agent: str) -> TaskPolicy:
        seen.append((capability, agent))
        return TaskPolicy(stall_after=1.0) if agent == "editor" else POLICY

    found = find_stalls([fold(a.envelopes)], T0 + 1_000, policy_for)
    assert [(s.task_id, s.code) for s in found] == [("busy", "STALLED")]
    assert ("editor.edit", "editor") in seen and ("writing.draft", "writing") in seen


def test_find_stalls_over_several_conversations() -> None:
    a, b = _conversation("ca", T0), _conversation("cb", T0 + 5_000)
    states = [fold(a.envelopes), fold(b.envelopes)]
    found = find_stalls(states, T0 + 3_000, lambda c, ag: POLICY)
    assert [(s.conversation_id, s.task_id, s.code) for s in found] == [("ca", "quiet", "NO_RECEIPT")]
    later = find_stalls(states, T0 + 16_000, lambda c, ag: POLICY)
    # Both conversations have been silent for over 10 s: their orchestrator counts as stalled too.
    assert sorted((s.conversation_id, s.task_id, s.code) for s in later) == [
        ("ca", "busy", "STALLED"), ("ca", "quiet", "NO_RECEIPT"), ("ca", "root", "STALLED"),
        ("ca", "silent", "STALLED"), ("cb", "busy", "STALLED"), ("cb", "quiet", "NO_RECEIPT"),
        ("cb", "root", "STALLED"), ("cb", "silent", "STALLED")]
    assert find_stalls([], T0, lambda c, ag: POLICY) == []
    assert find_stalls([ConversationState(conversation_id="empty")], T0, lambda c, ag: POLICY) == []


def test_a_working_orchestrator_is_not_a_stalled_root() -> None:
    # The orchestrator ACKs the root and then shows it is alive by its sub-task requests and decisions,
    # not by PROGRESS on the root: a long conversation that keeps moving is not a stalled one.
    h = History("long", start_ms=T0, step_ms=0)
    h.root()
    for i in range(6):
        req = h.at(T0 + i * 8_000).request(f"s{i}", "research")
        h.at(T0 + i * 8_000 + 100).ack(req)
        h.at(T0 + i * 8_000 + 7_000).response(req)
    now = T0 + 5 * 8_000 + 7_500  # 47.5 s in: past the stall window and the task timeout since the root ACK
    assert find_stalls([fold(h.envelopes)], now, lambda c, a: POLICY) == []


def test_a_silent_conversation_shows_a_stalled_orchestrator() -> None:
    # The orchestrator died: nothing has happened in the conversation for the stall window.
    h = History("dead", start_ms=T0, step_ms=0)
    h.root()
    req = h.at(T0 + 100).request("s1", "research")
    h.at(T0 + 200).ack(req)
    h.at(T0 + 300).response(req)
    found = find_stalls([fold(h.envelopes)], T0 + 300 + 10_000, lambda c, a: POLICY)
    assert [(s.task_id, s.agent, s.code, s.silent_ms) for s in found] == [("root", ORCH, "STALLED", 10_000)]


def test_a_root_nobody_acknowledged_has_no_receipt() -> None:
    h = History("orphan", start_ms=T0, step_ms=0)
    h.request("root", ORCH, capability="content.article", sender="client")
    found = find_stalls([fold(h.envelopes)], T0 + 2_000, lambda c, a: POLICY)
    assert [(s.task_id, s.code) for s in found] == [("root", "NO_RECEIPT")]
