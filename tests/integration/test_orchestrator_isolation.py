"""A bug in user code or an interrupted conversation stays inside its conversation; resumes and
retries never send what the ledger already shows as answered."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

from orchestration_harness import (
    FixedPlan,
    counting_agent,
    runtime,
    start_all,
    stop_all,
    wait_until,
)
from virtualclock import VirtualClock

from ledgerbus.agents.sdk import AgentError
from ledgerbus.eventstore.base import EventFilter
from ledgerbus.eventstore.fold import ConversationStatus, TaskStatus
from ledgerbus.eventstore.jetstream import JetStreamLedger
from ledgerbus.orchestrator.backoff import Backoff, RetryPolicy
from ledgerbus.orchestrator.breaker import BreakerState
from ledgerbus.orchestrator.engine import Orchestrator
from ledgerbus.orchestrator.plan import Plan, PlanContext, Step
from ledgerbus.orchestrator.policy import (
    BreakerPolicy,
    FallbackCapability,
    PolicySet,
    RateLimitPolicy,
    TaskPolicy,
)
from ledgerbus.orchestrator.ratelimit import from_policy
from ledgerbus.orchestrator.replaymodes import BudgetLimiter, fork_envelopes
from ledgerbus.schemas.capability import CapabilityRegistry
from ledgerbus.schemas.codes import Action, ErrorCode

FAST = TaskPolicy(receipt_timeout=0.5, stall_after=1.0, timeout=5.0, retry=RetryPolicy(3, Backoff(0.05, 2.0, 0.5)))
UNLIMITED = RateLimitPolicy(global_rate=None, agent_rate=None)


def orchestrator(bus: Any, reg: CapabilityRegistry, decomposer: Any, *, clock: Any = None, limiter: Any = None,
                 **policy: Any) -> Orchestrator:
    policies = PolicySet(default=policy.pop("default", FAST), rate=UNLIMITED, **policy)
    if isinstance(decomposer, list):
        decomposer = FixedPlan(decomposer)
    return Orchestrator(bus, decomposer=decomposer, policies=policies, registry=reg, rng=random.Random(7),
                        use_directory=False, clock=clock, limiter=limiter)


def step_task(result: Any, step_id: str) -> Any:
    return result.state.tasks[f"{result.conversation_id}_{step_id}"]


async def test_an_input_builder_that_raises_fails_its_step_and_the_rest_goes_on(bus):
    reg, calls = CapabilityRegistry(), Counter()
    agent = runtime(counting_agent("w", lambda p, c: {"v": 1}, reg, calls), bus)
    steps = [Step("a", "w.work", {}), Step("b", "w.work", {}, optional=True),
             Step("c", "w.work", lambda ctx: {"x": ctx.results["a"]["missing"]}, depends_on=("a",))]
    await start_all([agent])
    async with orchestrator(bus, reg, steps) as orch:
        result = await asyncio.wait_for(orch.run("test.run", {}), 10)
    await stop_all([agent])
    assert result.status is ConversationStatus.DEGRADED
    c = next(s for s in result.outcome.steps if s.step == "c")
    assert c.status == "FAILED" and c.error.code == ErrorCode.INTERNAL.value
    assert "building the input of step c raised KeyError" in c.error.message
    assert step_task(result, "a").status is TaskStatus.DONE and step_task(result, "b").status is TaskStatus.DONE


class Buggy:
    """A decomposer whose plan() or assemble() raises, as user code may."""

    def __init__(self, where: str) -> None:
        self.where = where

    def plan(self, capability: str, request: Any) -> Plan:
        if self.where == "plan":
            raise ValueError("decomposer bug")
        return Plan([Step("s", "w.work", {})])

    def assemble(self, capability: str, ctx: PlanContext, failed: Any) -> dict[str, Any]:
        raise ValueError("assembler bug")


async def test_a_decomposer_that_raises_ends_its_conversation_not_the_caller_or_the_service(bus):
    reg, calls = CapabilityRegistry(), Counter()
    agent = runtime(counting_agent("w", lambda p, c: {"v": 1}, reg, calls), bus)
    await start_all([agent])
    async with orchestrator(bus, reg, Buggy("plan")) as orch:
        unplanned = await asyncio.wait_for(orch.run("test.run", {}), 10)
    async with orchestrator(bus, reg, Buggy("assemble")) as orch:
        unassembled = await asyncio.wait_for(orch.run("test.run", {}), 10)
    await stop_all([agent])
    assert unplanned.status is ConversationStatus.FAILED
    assert unplanned.outcome.reasons == ["could not plan test.run: ValueError: decomposer bug"]
    # The steps' work is not thrown away: handed back as it is, DEGRADED, with the reason.
    assert unassembled.status is ConversationStatus.DEGRADED
    assert unassembled.result == {"s": {"v": 1}}
    assert "could not assemble the result of test.run: ValueError: assembler bug" in unassembled.outcome.reasons[0]


async def test_a_cancelled_conversation_stops_its_steps(bus):
    reg, calls = CapabilityRegistry(), Counter()

    def refuse(payload: Any, ctx: Any) -> None:
        raise AgentError("BUSY", "try again", retryable=True)

    agent = runtime(counting_agent("flaky", refuse, reg, calls), bus)
    policy = TaskPolicy(receipt_timeout=0.5, stall_after=1.0, timeout=5.0, retry=RetryPolicy(50, Backoff(0.05, 1.0, 0.1)))
    await start_all([agent])
    async with orchestrator(bus, reg, [Step("f", "flaky.work", {}), Step("g", "flaky.work", {})], default=policy) as orch:
        conv = asyncio.create_task(orch.run("test.run", {}))
        await wait_until(lambda: orch.sent_requests >= 4, 10, "a few attempts")
        conv.cancel()
        await asyncio.gather(conv, return_exceptions=True)
        left = [t for t in asyncio.all_tasks() if "_run_step" in repr(t.get_coro()) and not t.done()]
        sent = orch.sent_requests
    await stop_all([agent])
    assert conv.cancelled() and left == [] and not orch.runs
    assert orch.sent_requests == sent


async def test_a_half_open_probe_that_raises_gives_its_slot_back(bus):
    reg, calls = CapabilityRegistry(), Counter()
    agent = runtime(counting_agent("w", lambda p, c: {"v": 1}, reg, calls), bus)
    await start_all([agent])
    clock, budget = VirtualClock(), BudgetLimiter(from_policy(UNLIMITED), 0)  # acquire() raises
    async with orchestrator(bus, reg, [Step("s", "w.work", {})], breaker=BreakerPolicy(1, 0.05),
                            clock=clock, limiter=budget) as orch:
        breaker = orch.breakers.get("w")
        assert breaker.allow()
        breaker.record_failure()
        assert breaker.retry_after() > 0
        clock.advance(breaker.retry_after())  # the cool-down: next allow() is the probe
        spent = await asyncio.wait_for(orch.run("test.run", {}), 10)
        after_raise = (breaker.state, breaker.probe_in_flight)
        budget.budget = None
        served = await asyncio.wait_for(orch.run("test.run", {}), 10)
    await stop_all([agent])
    assert spent.status is ConversationStatus.FAILED and "budget" in spent.outcome.reasons[0]
    assert after_raise == (BreakerState.HALF_OPEN, False)
    assert served.status is ConversationStatus.DONE and breaker.state is BreakerState.CLOSED


async def test_a_late_answer_during_the_backoff_is_folded_late_and_the_retry_is_answered_from_the_record(bus):
    # The orchestrator's decision stands (DESIGN.md): the stalled attempt stays stalled however its answer
    # arrives later, the retry goes out, and the agent answers it from its record without running again.
    reg, calls = CapabilityRegistry(), Counter()
    holder: dict[str, Orchestrator] = {}

    async def late(payload: Any, ctx: Any) -> dict[str, Any]:
        if ctx.attempt == 1:  # silent past the stall window; answers once the retry is scheduled
            orch = holder["orch"]
            await wait_until(lambda: any(
                d.code == ErrorCode.RETRY_SCHEDULED.value
                for d in orch.runs[ctx.conversation_id].state.tasks[ctx.task_id].decisions), 10, "the retry's decision")
        return {"attempt": ctx.attempt}

    agent = runtime(counting_agent("w", late, reg, calls), bus)
    policy = TaskPolicy(receipt_timeout=1.0, stall_after=0.3, timeout=10.0,
                        retry=RetryPolicy(3, Backoff(1.0, 2.0, 1.0, "none")))
    clock = VirtualClock()  # the stall window and the backoff pass in virtual time

    def task_now() -> Any:
        return next((t for r in holder["orch"].runs.values() for tid, t in r.state.tasks.items()
                     if tid.endswith("_s")), None)

    await start_all([agent])
    async with orchestrator(bus, reg, [Step("s", "w.work", {})], default=policy, clock=clock) as orch:
        holder["orch"] = orch
        conv = asyncio.create_task(orch.run("test.run", {}))
        await wait_until(lambda: (t := task_now()) is not None and t.status is TaskStatus.ACKED, 10, "the ACK")
        stall = await clock.skip_to_timer()  # then silence: the stall window runs out
        waiting = asyncio.create_task(clock.waiting(requested=1.0))  # the retry's backoff
        # The late RESPONSE to the stalled attempt is folded while the backoff runs; the retry still goes out.
        await wait_until(lambda: (t := task_now()) is not None and bool(t.late), 10, "the late answer")
        assert orch.sent_requests == 1
        clock.advance(await asyncio.wait_for(waiting, 10))
        result = await asyncio.wait_for(conv, 10)
    await stop_all([agent])
    task = step_task(result, "s")
    assert stall == policy.stall_after
    assert result.status is ConversationStatus.DONE and task.result == {"attempt": 1}
    assert [late.attempt for late in task.late] == [1]
    assert orch.sent_requests == 2 and sum(calls.values()) == 1


async def _ledger(bus: Any, conversation_id: str) -> list[Any]:
    return [ev async for ev in JetStreamLedger(bus).read(EventFilter(conversation_ids=(conversation_id,)))]


async def test_a_resume_sends_nothing_the_ledger_shows_answered_and_gives_up_where_its_predecessor_did(bus):
    reg, calls = CapabilityRegistry(), Counter()

    def refuse(payload: Any, ctx: Any) -> None:
        raise AgentError("BAD_INPUT", "never")  # not retryable: straight to the fallback capability

    prim = runtime(counting_agent("prim", refuse, reg, calls), bus)
    alt = runtime(counting_agent("alt", lambda p, c: {"alt": 1}, reg, calls), bus)
    await start_all([prim, alt])
    policies = {"per_capability": {"prim.work": TaskPolicy(receipt_timeout=0.5, stall_after=1.0, timeout=5.0,
                                                            fallback=FallbackCapability("alt.work"))}}
    steps = [Step("s", "prim.work", {})]
    async with orchestrator(bus, reg, steps, **policies) as orch:
        done = await asyncio.wait_for(orch.run("test.run", {}), 10)
    assert done.status is ConversationStatus.DEGRADED
    events = await _ledger(bus, done.conversation_id)
    prim_task = f"{done.conversation_id}_s"
    final = next(e.position for e in events if e.envelope.task_id == done.conversation_id
                 and e.envelope.action is Action.RESPONSE)
    failed = next(e.position for e in events if e.envelope.task_id == prim_task and e.envelope.action is Action.ERROR)
    # Two orchestrators killed: one before the conversation's final RESPONSE (the fallback task had
    # answered), one right after the primary task's ERROR (the fallback not yet asked).
    copies = [fork_envelopes(events, max(e.position for e in events if e.position < final)), fork_envelopes(events, failed)]
    results = []
    for copy in copies:
        for env in copy:
            await bus.publish(env)
        # The copied REQUESTs reach the agents too (new keys: they run); counted before the resume, not by it.
        copied = {e.task_id for e in copy if e.action is Action.REQUEST and e.recipient in ("prim", "alt")}
        await wait_until(lambda: copied <= set(calls), 10, "the agents to take the copied requests")
        before = Counter(calls)
        async with orchestrator(bus, reg, steps, **policies) as orch:
            resumed = await asyncio.wait_for(orch.resume(copy), 10)
        results.append((resumed, orch.sent_requests, calls - before))
    await stop_all([prim, alt])
    (first, first_sent, first_runs), (second, second_sent, second_runs) = results
    assert first.status is ConversationStatus.DEGRADED and first_sent == 0 and not first_runs
    assert first.outcome.steps[0].fallback and first.result == {"s": {"alt": 1}}
    # The primary failed for good: not asked again; the fallback capability is, once.
    assert second.status is ConversationStatus.DEGRADED and second_sent == 1
    assert list(second_runs) == [f"{second.conversation_id}_s_fb1"]


async def test_the_conversations_deadline_bounds_every_step(bus):
    reg, calls = CapabilityRegistry(), Counter()
    release = asyncio.Event()

    async def hold(payload: Any, ctx: Any) -> dict[str, Any]:
        await release.wait()
        return {"late": True}

    agent = runtime(counting_agent("slow", hold, reg, calls), bus)
    patient = TaskPolicy(receipt_timeout=5.0, stall_after=20.0, timeout=30.0, retry=RetryPolicy(3, Backoff(0.05)))
    await start_all([agent])
    async with orchestrator(bus, reg, [Step("s", "slow.work", {})], default=patient) as orch:
        result = await asyncio.wait_for(orch.run("test.run", {}, deadline=0.5), 10)  # far inside every window
        release.set()
    await stop_all([agent])
    task = step_task(result, "s")
    assert result.status is ConversationStatus.FAILED
    assert task.deadline == result.state.tasks[result.conversation_id].deadline is not None
    assert task.error.code == ErrorCode.DEADLINE_EXCEEDED.value and task.attempts == 1  # not retried
    assert "DEADLINE_EXCEEDED: no answer from slow before the request's deadline" in result.outcome.reasons[0]
