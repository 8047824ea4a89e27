"""What the Agents page says of each agent type beyond its counts: its breaker, rebuilt from the ledger with the
orchestrator's own breaker policy, its recent errors and stalls, and its load. Pure: rows in, views out.

The orchestrator keeps its breakers in memory; the ledger holds what fed them. So the breakers are rebuilt
by replaying that, in position order, into `CircuitBreaker`s driven by the events' timestamps: a REQUEST to
an agent is the orchestrator's `allow()` (which is where an OPEN breaker whose cool-down is over turns
HALF_OPEN), the attempt's first outcome is `record_success()`, `record_failure()` or `release()` as the
orchestrator charges it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

from ledgerbus.eventstore.fold import ConversationState, TaskStatus
from ledgerbus.orchestrator.breaker import BreakerState, CircuitBreaker
from ledgerbus.orchestrator.policy import BreakerPolicy

#: The failures the orchestrator charges to an agent's breaker (the rest, bad input above all, are the
#: requester's and give the slot back): the set in orchestrator/supervisor.py, kept in step by hand.
AGENT_FAULTS = frozenset({"NO_RECEIPT", "STALLED", "TIMED_OUT", "HANDLER_ERROR", "INTERNAL", "INVALID_OUTPUT"})
#: The orchestrator's verdicts on an attempt (its own ERRORs that end one); its other ERRORs are decisions.
VERDICTS = frozenset({"NO_RECEIPT", "STALLED", "TIMED_OUT", "DEADLINE_EXCEEDED"})
#: Verdicts the page lists as the agent's stalls.
STALLS = frozenset({"NO_RECEIPT", "STALLED", "TIMED_OUT"})
#: Recent errors and stalls kept per agent type.
KEEP = 5


class Row(NamedTuple):
    """One envelope of the replayed stretch, as index.LedgerIndex.outcome_rows reads it."""

    position: int
    timestamp: int
    conversation_id: str
    sender: str
    recipient: str
    action: str
    task_id: str
    attempt: int
    code: str | None


class Mark(NamedTuple):
    """A recent error or stall of an agent: where it is, and its code."""

    position: int
    conversation_id: str
    code: str


class Breaker(NamedTuple):
    state: BreakerState
    failures: int  # consecutive failures counted while CLOSED
    since_ms: int | None  # when it last changed state
    retry_after_s: float  # until an OPEN breaker lets a probe through; 0 when it would now


class AgentView(NamedTuple):
    breaker: Breaker
    errors: tuple[Mark, ...]  # newest first
    stalls: tuple[Mark, ...]


def _subtask(task_id: str) -> bool:
    """A task the orchestrator routed (through a breaker): a step of a plan, `<root task>_<step>`."""
    return "_" in task_id


def replay(rows: Iterable[Row], now_ms: int,
           policy_for: Callable[[str], BreakerPolicy] = lambda agent: BreakerPolicy()) -> dict[str, AgentView]:
    """Per agent type the orchestrator sent steps to in `rows` (in position order): its breaker at `now_ms`
    under its `policy_for(agent type)`, and its newest errors and stalls."""
    clock = [0.0]
    breakers: dict[str, CircuitBreaker] = {}
    errors: dict[str, list[Mark]] = {}
    stalls: dict[str, list[Mark]] = {}
    sent: dict[tuple[str, str, int], str] = {}  # an attempt still waiting for its outcome -> its agent
    for r in rows:
        clock[0] = r.timestamp / 1000
        key = (r.conversation_id, r.task_id, r.attempt)
        if r.action == "REQUEST":
            if _subtask(r.task_id):
                b = breakers.get(r.recipient)
                if b is None:
                    policy = policy_for(r.recipient)
                    b = breakers[r.recipient] = CircuitBreaker(r.recipient, policy.failure_threshold,
                                                               policy.reset_timeout, clock=lambda: clock[0])
                b.allow()
                sent[key] = r.recipient
            continue
        agent = sent.get(key)
        if agent is None:
            continue
        if r.action == "RESPONSE" and r.sender == agent:
            breakers[agent].record_success()
        elif r.action == "ERROR" and (r.sender == agent or r.code in VERDICTS):
            code = r.code or ""
            if code in AGENT_FAULTS:
                breakers[agent].record_failure()
            else:
                breakers[agent].release()
            mark = Mark(r.position, r.conversation_id, code)
            if r.sender == agent:
                errors.setdefault(agent, []).append(mark)
            elif code in STALLS:
                stalls.setdefault(agent, []).append(mark)
        else:
            continue  # a decision (retry scheduled, rate limited, ...) or a fallback's answer: not an outcome
        del sent[key]
    clock[0] = now_ms / 1000
    out = {}
    for agent, b in breakers.items():
        changed = b.transitions[-1].at if b.transitions else None
        out[agent] = AgentView(
            Breaker(b.state, b.failures, None if changed is None else int(changed * 1000), b.retry_after()),
            tuple(reversed(errors.get(agent, [])[-KEEP:])), tuple(reversed(stalls.get(agent, [])[-KEEP:])))
    return out


def load(states: Sequence[ConversationState]) -> dict[str, int]:
    """Tasks in flight (sent, or acknowledged and not answered) per agent type, over folded conversations."""
    out: dict[str, int] = {}
    for st in states:
        for t in st.tasks.values():
            if t.status in (TaskStatus.SENT, TaskStatus.ACKED) and _subtask(t.task_id):
                out[t.agent] = out.get(t.agent, 0) + 1
    return out
