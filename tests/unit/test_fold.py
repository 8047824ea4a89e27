"""The fold: hand-written histories, and properties (causal interleavings, determinism, totality)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledgerbus.eventstore.base import StoredEvent
from ledgerbus.eventstore.folds import Folds
from ledgerbus.eventstore.fold import (
    ConversationState,
    ConversationStatus,
    TaskStatus,
    apply,
    fold,
)
from ledgerbus.schemas.codes import Action, ErrorCode
from ledgerbus.schemas.envelope import Envelope, ErrorInfo

from ledger_histories import ORCH, History

S = TaskStatus
C = ConversationStatus


# -- one task, step by step ---------------------------------------------------------------------

def test_request_ack_progress_response() -> None:
    h = History(start_ms=10_000, step_ms=100)
    req = h.request("t1", "research", payload={"topic": "bees"})  # t=10000
    state = apply(ConversationState(conversation_id="conv1"), req, 1)
    t = state.tasks["t1"]
    assert (t.status, t.attempt, t.attempts, t.agent, t.requester) == (S.SENT, 1, 1, "research", ORCH)
    assert (t.request_id, t.input, t.sent_at, t.requested_at) == (req.id, {"topic": "bees"}, 10_000, 10_000)
    assert not t.finished and t.duration_ms is None

    apply(state, h.ack(req), 2)  # t=10100
    assert (t.status, t.acked_at, t.last_activity_at) == (S.ACKED, 10_100, 10_100)

    h.wait(800)
    apply(state, h.progress(req), 3)  # t=11000
    apply(state, h.progress(req), 4)  # t=11100
    assert (t.status, t.progress, t.last_progress) == (S.ACKED, 2, {"stage": "working"})
    assert (t.acked_at, t.last_activity_at) == (10_100, 11_100)

    apply(state, h.response(req, {"notes": ["n"]}), 5)  # t=11200
    assert (t.status, t.result, t.error, t.fallback) == (S.DONE, {"notes": ["n"]}, None, False)
    assert (t.finished_at, t.duration_ms, t.last_position) == (11_200, 1_200, 5)
    assert t.finished and t.decisions == []
    assert (state.events, state.last_position, state.started_at, state.last_timestamp) == (5, 5, 10_000, 11_200)


def test_progress_without_ack_counts_as_receipt() -> None:
    h = History()
    req = h.request("t1", "research")
    h.progress(req)
    t = fold(h.envelopes).tasks["t1"]
    assert t.status is S.ACKED and t.acked_at == t.last_activity_at is not None


def test_conversation_done_when_the_root_answers() -> None:
    h = History(start_ms=5_000)
    root = h.root()
    assert fold(h.envelopes).status is C.RUNNING
    for i, agent in enumerate(("research", "writing", "editor")):
        req = h.request(f"s{i}", agent)
        h.ack(req)
        h.response(req)
    assert fold(h.envelopes).status is C.RUNNING  # every step done, but the root has not answered
    end = h.finish(root)
    st_ = fold(h.envelopes)
    assert st_.status is C.DONE
    assert (st_.root_task_id, st_.requester, st_.capability) == ("root", "client", "content.article")
    assert st_.result == end.payload and st_.error is None
    assert (st_.started_at, st_.ended_at, st_.duration_ms) == (5_000, end.timestamp, end.timestamp - 5_000)
    assert [t.task_id for t in st_.subtasks] == ["s0", "s1", "s2"]
    assert st_.root is not None and st_.root.status is S.DONE


def test_degraded_root() -> None:
    h = History()
    root = h.root()
    ok = h.request("s1", "research")
    h.response(ok)
    bad = h.request("s2", "editor", capability="editor.edit")
    h.error(bad, "HANDLER_ERROR")
    h.finish(root, degraded="step s2 (editor.edit) failed after 1 attempt(s): HANDLER_ERROR")
    st_ = fold(h.envelopes)
    assert st_.status is C.DEGRADED
    assert st_.error is not None and st_.error.code == "DEGRADED" and "s2" in st_.error.message
    assert st_.result == {"status": "DEGRADED", "result": {"title": "t"}}
    assert st_.tasks["s2"].status is S.FAILED and st_.tasks["s1"].status is S.DONE


def test_failed_root() -> None:
    h = History()
    root = h.root()
    bad = h.request("s1", "research")
    h.decision(bad, "NO_RECEIPT", retryable=True)
    h.finish(root, failed="nothing succeeded")
    st_ = fold(h.envelopes)
    assert st_.status is C.FAILED
    assert st_.error is not None and st_.error.code == "DEPENDENCY_FAILED"
    assert st_.result is None and st_.ended_at is not None


def test_late_events_after_the_root_finished_do_not_reopen_it() -> None:
    h = History()
    root = h.root()
    req = h.request("s1", "research")
    h.decision(req, "STALLED", retryable=True)
    h.finish(root, degraded="s1 stalled")
    h.progress(req)
    h.response(req)  # the stalled agent finally answers: too late, the orchestrator degraded the conversation
    st_ = fold(h.envelopes)
    t = st_.tasks["s1"]
    assert st_.status is C.DEGRADED and t.status is S.STALLED and t.result is None
    assert [(a.attempt, a.sender) for a in t.late] == [(1, "research")]


# -- agent errors and orchestrator decisions ----------------------------------------------------

def test_agent_error_fails_the_task_and_is_not_a_decision() -> None:
    h = History()
    req = h.request("t1", "research")
    h.ack(req)
    h.error(req, "HANDLER_ERROR")
    t = fold(h.envelopes).tasks["t1"]
    assert t.status is S.FAILED and t.error is not None and t.error.code == "HANDLER_ERROR"
    assert t.finished_at is not None and t.decisions == []
    assert not t.retry_pending


def test_error_without_an_error_object_is_internal() -> None:
    h = History()
    req = h.request("t1", "research")
    h._answer(req, Action.ERROR)
    t = fold(h.envelopes).tasks["t1"]
    assert t.status is S.FAILED and t.error is not None and t.error.code == "INTERNAL"


@pytest.mark.parametrize(
    ("code", "status"),
    [("NO_RECEIPT", S.FAILED), ("STALLED", S.STALLED), ("TIMED_OUT", S.TIMED_OUT),
     ("DEADLINE_EXCEEDED", S.FAILED), ("INVALID_MESSAGE", S.FAILED)],
)
def test_orchestrator_verdicts_end_the_attempt_and_are_recorded(code: str, status: TaskStatus) -> None:
    h = History()
    req = h.request("t1", "research")
    if code in ("STALLED", "TIMED_OUT"):
        h.ack(req)
    h.wait(5_000)
    verdict = h.decision(req, code)
    st_ = fold(h.events)
    t = st_.tasks["t1"]
    assert t.status is status and t.finished
    assert t.error is not None and t.error.code == code
    assert [(d.code, d.attempt, d.position, d.timestamp) for d in t.decisions] == [
        (code, 1, len(h.envelopes), verdict.timestamp)]


@pytest.mark.parametrize("code", ["RATE_LIMITED", "RETRY_SCHEDULED"])
def test_notes_do_not_change_the_status(code: str) -> None:
    h = History()
    req = h.request("t1", "research")
    h.ack(req)
    h.decision(req, code)
    t = fold(h.envelopes).tasks["t1"]
    assert t.status is S.ACKED and t.error is None
    assert [d.code for d in t.decisions] == [code]


def test_breaker_open_without_a_request_is_still_a_decision() -> None:
    # The engine records BREAKER_OPEN about a REQUEST it never sent (no agent could take it).
    h = History()
    h.root()
    unsent = h.request("s1", "research", record=False)
    h.decision(unsent, "BREAKER_OPEN")
    h.fallback(unsent)
    t = fold(h.envelopes).tasks["s1"]
    assert t.attempts == 0
    assert [d.code for d in t.decisions] == ["BREAKER_OPEN", "FALLBACK_USED"]
    assert t.status is S.DONE and t.fallback


def test_fallback_response() -> None:
    h = History()
    root = h.root()
    req = h.request("s1", "research")
    h.ack(req)
    h.decision(req, "STALLED", retryable=True)
    h.fallback(req, {"notes": []})
    h.finish(root, degraded="step s1 used its fallback after STALLED")
    st_ = fold(h.envelopes)
    t = st_.tasks["s1"]
    assert t.status is S.DONE and t.fallback
    assert t.result == {"notes": []}
    assert t.error is not None and t.error.code == "FALLBACK_USED"
    assert [d.code for d in t.decisions] == ["STALLED", "FALLBACK_USED"]
    assert st_.status is C.DEGRADED


# -- retries ------------------------------------------------------------------------------------

def test_retry_after_a_stall_with_late_answers_from_the_old_attempt() -> None:
    h = History()
    r1 = h.request("t1", "research", attempt=1)
    h.ack(r1)
    h.decision(r1, "STALLED", retryable=True)
    h.decision(r1, "RETRY_SCHEDULED")
    assert fold(h.envelopes).tasks["t1"].retry_pending
    r2 = h.request("t1", "research", attempt=2)
    t = fold(h.envelopes).tasks["t1"]
    assert (t.status, t.attempt, t.attempts, t.request_id, t.acked_at, t.error) == (S.SENT, 2, 2, r2.id, None, None)
    assert not t.retry_pending
    # The stalled instance wakes up: its ACK, PROGRESS and ERROR for attempt 1 must not touch attempt 2.
    h.ack(r1)
    h.progress(r1)
    h.error(r1, "HANDLER_ERROR")
    t = fold(h.envelopes).tasks["t1"]
    assert (t.status, t.attempt, t.progress, t.error) == (S.SENT, 2, 0, None)
    h.ack(r2)
    h.response(r2, {"ok": 2})
    t = fold(h.envelopes).tasks["t1"]
    assert (t.status, t.attempt, t.attempts, t.result) == (S.DONE, 2, 2, {"ok": 2})
    assert [d.code for d in t.decisions] == ["STALLED", "RETRY_SCHEDULED"]
    assert t.requested_at == r1.timestamp and t.sent_at == r2.timestamp


def test_a_retry_in_flight_has_no_finish_time_until_it_ends() -> None:
    h = History()
    r1 = h.request("t1", "research", attempt=1)
    h.ack(r1)
    failed = h.decision(r1, "STALLED", retryable=True)
    h.decision(r1, "RETRY_SCHEDULED")
    t = fold(h.envelopes).tasks["t1"]
    assert t.finished_at == failed.timestamp  # the attempt did end, and the retry is only scheduled
    r2 = h.request("t1", "research", attempt=2)
    h.error(r1, "HANDLER_ERROR")  # the old attempt's late answer does not end the new one
    t = fold(h.envelopes).tasks["t1"]
    assert (t.status, t.finished_at, t.duration_ms) == (S.SENT, None, None)
    h.ack(r2)
    done = h.response(r2)
    t = fold(h.envelopes).tasks["t1"]
    assert (t.finished_at, t.duration_ms) == (done.timestamp, done.timestamp - r1.timestamp)


def test_a_late_response_from_an_old_attempt_completes_the_task() -> None:
    h = History()
    r1 = h.request("t1", "research", attempt=1)
    h.ack(r1)
    h.error(r1, "INTERNAL", retryable=True)  # the agent ended the attempt, not an orchestrator verdict
    h.decision(r1, "RETRY_SCHEDULED")
    r2 = h.request("t1", "research", attempt=2)
    h.ack(r2)
    h.response(r1, {"from": 1})  # tasks are idempotent: the old attempt's answer is a valid one
    h.error(r2, "HANDLER_ERROR")  # and the newer attempt failing afterwards does not undo it
    h.request("t1", "research", attempt=3)  # nor does a retry that was already on its way
    t = fold(h.envelopes).tasks["t1"]
    assert (t.status, t.result, t.attempts, t.attempt) == (S.DONE, {"from": 1}, 3, 2)


def test_a_rate_limited_note_about_the_next_attempt_keeps_the_retry_pending() -> None:
    h = History()
    r1 = h.request("t1", "research", attempt=1)
    h.error(r1, "INTERNAL", retryable=True)
    h.decision(r1, "RETRY_SCHEDULED")
    r2 = h.request("t1", "research", attempt=2, record=False)  # built, waiting for a token
    h.decision(r2, "RATE_LIMITED")
    t = fold(h.envelopes).tasks["t1"]
    assert t.retry_pending and t.attempt == 1
    assert [(d.code, d.attempt) for d in t.decisions] == [("RETRY_SCHEDULED", 1), ("RATE_LIMITED", 2)]


def test_a_retry_stopped_by_an_open_breaker_is_not_pending() -> None:
    h = History()
    r1 = h.request("t1", "research", attempt=1)
    h.error(r1, "INTERNAL", retryable=True)
    h.decision(r1, "RETRY_SCHEDULED")
    h.decision(r1, "BREAKER_OPEN")  # when the backoff ended, no agent could take attempt 2
    t = fold(h.envelopes).tasks["t1"]
    assert t.status is S.FAILED and not t.retry_pending
    assert t.error is not None and t.error.code == "BREAKER_OPEN"


def test_a_final_failure_after_an_earlier_retry_is_not_pending() -> None:
    h = History()
    r1 = h.request("t1", "research", attempt=1)
    h.error(r1, "INTERNAL", retryable=True)
    h.decision(r1, "RETRY_SCHEDULED")
    r2 = h.request("t1", "research", attempt=2)
    h.error(r2, "HANDLER_ERROR")  # not retryable: the orchestrator gives up
    t = fold(h.envelopes).tasks["t1"]
    assert t.status is S.FAILED and not t.retry_pending


def test_retry_of_an_agent_error_then_success() -> None:
    h = History()
    r1 = h.request("t1", "research", attempt=1)
    h.ack(r1)
    h.error(r1, "INTERNAL", retryable=True)
    h.decision(r1, "RETRY_SCHEDULED")
    t = fold(h.envelopes).tasks["t1"]
    assert t.status is S.FAILED and t.retry_pending
    r2 = h.request("t1", "research", attempt=2)
    h.ack(r2)
    h.response(r2)
    t = fold(h.envelopes).tasks["t1"]
    assert (t.status, t.attempt, t.attempts, t.error) == (S.DONE, 2, 2, None)


def test_a_stale_request_does_not_rewind_the_attempt() -> None:
    h = History()
    h.request("t1", "research", attempt=2)
    h.request("t1", "research", attempt=1)  # e.g. a slow republish of the first attempt
    t = fold(h.envelopes).tasks["t1"]
    assert (t.attempt, t.attempts, t.status) == (2, 2, S.SENT)


@pytest.mark.parametrize("agent_first", [True, False])
def test_verdict_and_late_agent_error_race_either_way(agent_first: bool) -> None:
    # The orchestrator declared the attempt STALLED while the agent's ERROR was in flight: the two can
    # land in either order. What the orchestrator acted on (the verdict) is the attempt's status both ways.
    h = History()
    req = h.request("t1", "research")
    h.ack(req)
    if agent_first:
        h.error(req, "HANDLER_ERROR")
        h.decision(req, "STALLED", retryable=True)
    else:
        h.decision(req, "STALLED", retryable=True)
        h.error(req, "HANDLER_ERROR")
    t = fold(h.envelopes).tasks["t1"]
    assert t.status is S.STALLED
    assert t.error is not None and t.error.code == "STALLED"
    assert [d.code for d in t.decisions] == ["STALLED"]


# -- fold plumbing ------------------------------------------------------------------------------

def test_positions_come_from_stored_events() -> None:
    h = History()
    req = h.request("t1", "research")
    h.decision(req, "RATE_LIMITED")
    events = [StoredEvent(p, e.envelope) for p, e in zip((10, 42), h.events)]
    st_ = fold(events)
    assert st_.last_position == 42 and st_.tasks["t1"].last_position == 42
    assert st_.tasks["t1"].decisions[0].position == 42
    assert fold(h.envelopes).last_position == 0  # bare envelopes carry no position


def test_folds_split_conversations() -> None:
    a, b = History("ca"), History("cb")
    ra, rb = a.root(), b.root()
    a.finish(ra)
    b.finish(rb, failed="no")
    mixed = [(i + 1, e) for i, e in enumerate(x for pair in zip(a.envelopes, b.envelopes) for x in pair)]
    states = Folds().add_all(StoredEvent(p, e) for p, e in mixed).states
    assert {k: v.status for k, v in states.items()} == {"ca": C.DONE, "cb": C.FAILED}
    assert states["ca"] == fold([StoredEvent(p, e) for p, e in mixed if e.conversation_id == "ca"])


def test_folds_hand_over_ended_conversations_and_count_what_comes_after() -> None:
    a, b = History("ca"), History("cb")
    ra, rb = a.root(), b.root()
    a.finish(ra)
    late = a.envelopes[-1]
    events = [StoredEvent(p, e) for p, e in enumerate([*a.envelopes, *b.envelopes, late], 1)]
    ended: list[str] = []
    folds = Folds(on_end=lambda st_: ended.append(st_.conversation_id)).add_all(events)
    assert ended == ["ca"] and list(folds.states) == ["cb"] and folds.late == 1  # ca is forgotten once ended
    assert folds.finish() == {} and ended == ["ca", "cb"]
    kept = Folds().add_all(events)
    assert kept.late == 0 and kept.states["ca"].events == len(a.envelopes) + 1


def test_empty_fold() -> None:
    assert fold([], "cx") == ConversationState(conversation_id="cx")
    assert fold([]).status is C.RUNNING


def test_fold_is_resumable_from_a_prefix() -> None:
    h = History()
    root = h.root()
    r = h.request("s1", "research")
    h.ack(r)
    h.response(r)
    h.finish(root)
    for k in range(len(h.envelopes) + 1):
        state = fold(h.envelopes[:k], "conv1")
        for e in h.envelopes[k:]:
            apply(state, e)
        assert state == fold(h.envelopes)


# -- property: causal interleavings fold to the same final status ---------------------------------

@dataclass
class Node:
    env: Envelope
    preds: list[int]


@dataclass
class Scenario:
    nodes: list[Node] = field(default_factory=list)
    expected: dict[str, TaskStatus] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    conversation: ConversationStatus = C.RUNNING

    def add(self, env: Envelope, *preds: int | None) -> int:
        self.nodes.append(Node(env, [p for p in preds if p is not None]))
        return len(self.nodes) - 1


OUTCOMES_LAST = ["response", "error", "stall", "no_receipt", "timeout", "open_sent", "open_acked"]
OUTCOMES_RETRIED = ["error", "stall", "no_receipt", "timeout"]


def _attempt(draw: st.DrawFn, h: History, sc: Scenario, task: str, agent: str, k: int, gate: int,
             last: bool, prev: Envelope | None) -> tuple[int | None, TaskStatus | None, bool]:
    """One attempt's events. Returns (what the orchestrator reacted to, the status it ends in, a RESPONSE exists)."""
    req = h.request(task, agent, attempt=k)
    if last and draw(st.integers(0, 5)) == 0:
        # The breaker is open when the attempt is due: it is never sent, and the decision is about the
        # previous REQUEST (or the unsent one, on a first attempt).
        return sc.add(h.decision(prev or req, "BREAKER_OPEN"), gate), S.FAILED, False
    if draw(st.booleans()):  # the orchestrator waited for a token first, and said so
        gate = sc.add(h.decision(req, "RATE_LIMITED"), gate)
    i_req = sc.add(req, gate)
    outcome = draw(st.sampled_from(OUTCOMES_LAST if last else OUTCOMES_RETRIED))
    answered = False
    if outcome == "open_sent":
        return None, S.SENT, False
    if outcome == "no_receipt":
        seen = sc.add(h.decision(req, "NO_RECEIPT", retryable=True), i_req)
        if draw(st.booleans()):  # the ACK was in flight: it lands anywhere after the REQUEST
            i_late = sc.add(h.ack(req), i_req)
            if draw(st.booleans()):
                sc.add(h.error(req, "HANDLER_ERROR"), i_late)
        return seen, S.FAILED, False
    i_ack = sc.add(h.ack(req), i_req)
    chain = i_ack
    for _ in range(draw(st.integers(0, 2))):
        chain = sc.add(h.progress(req), chain)
    if outcome == "open_acked":
        return None, S.ACKED, False
    if outcome == "response":
        if draw(st.booleans()):  # redelivered to a second instance, which answers too
            sc.add(h.response(req), sc.add(h.ack(req), i_req))
        return sc.add(h.response(req), chain), S.DONE, True
    if outcome == "error":
        return sc.add(h.error(req, "INTERNAL", retryable=not last), chain), S.FAILED, False
    # stall / timeout: the orchestrator saw the ACK, then (by its clock) silence; the agent's later
    # events were in flight and can land before or after the verdict.
    code = "STALLED" if outcome == "stall" else "TIMED_OUT"
    verdict = sc.add(h.decision(req, code, retryable=True), i_ack)
    # The verdict stands both ways: a RESPONSE racing it is folded as late, before or after it.
    late = draw(st.sampled_from(["none", "error", "response"]))
    if late == "error":
        sc.add(h.error(req, "HANDLER_ERROR"), chain)
    elif late == "response":
        sc.add(h.response(req), chain)
    return verdict, S.STALLED if code == "STALLED" else S.TIMED_OUT, answered


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    h = History("cprop")
    sc = Scenario()
    root = h.request("root", ORCH, capability="content.article", sender="client")
    i_root = sc.add(root)
    i_root_ack = sc.add(h.ack(root), i_root)
    finals: list[int] = []
    all_ok, all_closed = True, True
    for n in range(draw(st.integers(1, 3))):
        task, agent = f"s{n}", ("research", "writing", "editor")[n]
        attempts = draw(st.integers(1, 3))
        gate, any_response, status = i_root_ack, False, S.PENDING
        prev: Envelope | None = None
        for k in range(1, attempts + 1):
            seen, status, answered = _attempt(draw, h, sc, task, agent, k, gate, k == attempts, prev)
            any_response |= answered
            if seen is None:
                break
            prev = next((nd.env for nd in reversed(sc.nodes)
                         if nd.env.task_id == task and nd.env.action is Action.REQUEST), None)
            if k < attempts:
                gate = sc.add(h.decision(sc.nodes[seen].env, "RETRY_SCHEDULED"), seen)
        else:
            if status is not S.DONE and draw(st.booleans()):
                seen = sc.add(h.fallback(sc.nodes[seen].env), seen)
                status = S.DONE
            all_ok &= status is S.DONE and sc.nodes[seen].env.sender != ORCH
            finals.append(seen)
        if status in (S.SENT, S.ACKED):
            all_closed = False
        sc.requests[task] = sum(1 for nd in sc.nodes if nd.env.task_id == task and nd.env.action is Action.REQUEST)
        sc.expected[task] = S.DONE if any_response else status
    sc.expected["root"] = S.ACKED
    if all_closed:
        kind = draw(st.sampled_from(["done", "degraded", "failed"] if not all_ok else ["done"]))
        finish = h.finish(root, degraded="some failed" if kind == "degraded" else None,
                          failed="all failed" if kind == "failed" else None)
        sc.add(finish, *finals)
        sc.expected["root"] = S.FAILED if kind == "failed" else S.DONE
        sc.conversation = {"done": C.DONE, "degraded": C.DEGRADED, "failed": C.FAILED}[kind]
    return sc


def linear_extension(sc: Scenario, priorities: list[int]) -> list[Envelope]:
    """The causal order with ties broken by `priorities`: any valid ledger order is one of these."""
    placed: set[int] = set()
    out: list[Envelope] = []
    while len(out) < len(sc.nodes):
        ready = [i for i, nd in enumerate(sc.nodes) if i not in placed and all(p in placed for p in nd.preds)]
        pick = min(ready, key=lambda i: (priorities[i % len(priorities)], i))
        placed.add(pick)
        out.append(sc.nodes[pick].env)
    return out


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios(), st.lists(st.integers(0, 1000), min_size=1, max_size=60),
       st.lists(st.integers(0, 1000), min_size=1, max_size=60))
def test_any_causal_interleaving_folds_to_the_same_final_status(
        sc: Scenario, prio_a: list[int], prio_b: list[int]) -> None:
    order_a = linear_extension(sc, prio_a)
    order_b = linear_extension(sc, prio_b)
    fa, fb = fold(order_a), fold(order_b)
    got_a = {tid: t.status for tid, t in fa.tasks.items()}
    assert got_a == sc.expected
    assert got_a == {tid: t.status for tid, t in fb.tasks.items()}
    assert fa.status is fb.status is sc.conversation
    assert not any(t.retry_pending for t in fa.tasks.values())  # every scheduled retry was sent
    assert {tid: t.attempts for tid, t in fa.tasks.items() if tid != "root"} == sc.requests


# -- property: deterministic and total -----------------------------------------------------------

CODES = [c.value for c in ErrorCode] + ["DEGRADED", "SOMETHING_ELSE"]
names = st.sampled_from(["t1", "t2", "t3"])
agents = st.sampled_from(["research", "writing", ORCH, "client"])


@st.composite
def any_envelope(draw: st.DrawFn) -> Envelope:
    action = draw(st.sampled_from(list(Action)))
    err = None
    if action in (Action.ERROR, Action.RESPONSE) and draw(st.booleans()):
        err = ErrorInfo(code=draw(st.sampled_from(CODES)), message="m", retryable=draw(st.booleans()))
    return Envelope(
        id=f"e{draw(st.integers(0, 10**6))}", conversation_id=draw(st.sampled_from(["c1", "c2"])),
        task_id=draw(names), sender=draw(agents), recipient=draw(agents), action=action,
        capability=draw(st.sampled_from(["a.b", "c.d"])),
        payload=draw(st.dictionaries(st.sampled_from(["x", "y"]), st.integers(), max_size=2)),
        attempt=draw(st.integers(1, 4)), deadline=draw(st.none() | st.integers(0, 10**7)),
        timestamp=draw(st.integers(0, 10**7)), error=err,
        causation_id=draw(st.none() | st.just("e1")),
    )


def _plain(state: ConversationState) -> Any:
    return msgspec.to_builtins(state)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(any_envelope(), max_size=40))
def test_fold_is_total_and_deterministic(events: list[Envelope]) -> None:
    first = fold(events)
    second = fold(list(events))
    assert _plain(first) == _plain(second)
    assert first.events == len(events)
    for tid, task in first.tasks.items():
        assert isinstance(task.status, TaskStatus)
        # Every REQUEST is an attempt but those the fold ignored (a duplicate id, a stranger's retry); a
        # conductor taking a task over starts its count again.
        sent = sum(1 for e in events if e.task_id == tid and e.action is Action.REQUEST)
        refused = sum(1 for i in first.ignored if i.task_id == tid and i.action == "REQUEST" and "takes it over" not in i.reason)
        assert task.attempts <= sent - refused
        if not any(i.task_id == tid for i in first.ignored):
            assert task.attempts == sent
        if task.finished:
            assert task.finished_at is not None
        if task.status is S.DONE:
            assert task.result is not None
    if first.status in (C.DONE, C.DEGRADED):
        assert first.root is not None and first.root.status is S.DONE
    states = Folds().add_all(StoredEvent(p, e) for p, e in enumerate(events, 1)).states
    assert sum(s.events for s in states.values()) == len(events)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(any_envelope(), max_size=40))
def test_done_is_absorbing(events: list[Envelope]) -> None:
    # The one way out of DONE: the conductor's REQUEST for a task id someone else asked first (task ids are
    # predictable) takes the task over, and that is recorded in `ignored`.
    state = ConversationState(conversation_id="c")
    done: set[str] = set()
    for e in events:
        ignored_before = len(state.ignored)
        apply(state, e)
        now_done = {tid for tid, t in state.tasks.items() if t.status is S.DONE}
        taken_over = {i.task_id for i in state.ignored[ignored_before:] if "takes it over" in i.reason}
        assert done - taken_over <= now_done
        done = now_done


@pytest.mark.parametrize("answer_first", [True, False])
def test_a_response_racing_the_verdict_on_its_attempt_is_late_either_way(answer_first: bool) -> None:
    h = History()
    req = h.request("t1", "research")
    h.ack(req)
    if answer_first:  # stored just before the verdict the orchestrator gave without having seen it
        h.response(req, {"out": 1})
        h.decision(req, "TIMED_OUT", retryable=True)
    else:
        h.decision(req, "TIMED_OUT", retryable=True)
        h.response(req, {"out": 1})
    t = fold(h.envelopes).tasks["t1"]
    assert (t.status, t.result, t.answered) == (S.TIMED_OUT, None, None)
    assert [(a.attempt, a.sender) for a in t.late] == [(1, "research")]
