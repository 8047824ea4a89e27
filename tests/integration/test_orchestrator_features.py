"""Issue 4: fan-in, idempotent tasks, heartbeats, and the agent directory, on a real nats-server."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

from orchestration_harness import FixedPlan, counting_agent, echo_input, runtime, start_all, stop_all

from ledgerbus.agents.directory import Directory
from ledgerbus.agents.sdk import Agent, AgentError
from ledgerbus.bus.requester import Requester
from ledgerbus.eventstore.fold import ConversationStatus, TaskStatus
from ledgerbus.orchestrator.aggregate import Quorum
from ledgerbus.orchestrator.backoff import Backoff, RetryPolicy
from ledgerbus.orchestrator.engine import Orchestrator
from ledgerbus.orchestrator.plan import Step
from ledgerbus.orchestrator.policy import PolicySet, RateLimitPolicy, TaskPolicy
from ledgerbus.schemas.capability import CapabilityRegistry
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import new_request

UNLIMITED = RateLimitPolicy(global_rate=None, agent_rate=None)


async def test_quorum_lets_the_next_step_start_before_the_slowest_dependency(bus):
    reg, calls = CapabilityRegistry(), Counter()
    slow_gate = asyncio.Event()
    started_w: list[list[str]] = []

    async def research(payload, ctx):
        if payload["n"] == 3:
            await slow_gate.wait()

    def write(payload, ctx):
        started_w.append(payload["seen"])
        slow_gate.set()  # only now may the third angle finish

    agents = [runtime(counting_agent("r", research, reg, calls), bus), runtime(counting_agent("w", write, reg, calls), bus)]
    steps = [*(Step(f"r{n}", "r.work", {"n": n}) for n in (1, 2, 3)),
             Step("w", "w.work", echo_input("w"), depends_on=("r1", "r2", "r3"), fan_in=Quorum(2))]
    orch = Orchestrator(bus, decomposer=FixedPlan(steps), registry=reg,
                        policies=PolicySet(rate=UNLIMITED, default=TaskPolicy(stall_after=5.0)))
    await start_all(agents)
    async with orch:
        result = await asyncio.wait_for(orch.run("test.run", {}), 10)
    await stop_all(agents)
    assert result.status is ConversationStatus.DONE
    assert started_w == [["r1", "r2"]]  # started at the quorum, with the two results it had
    assert all(t.status is TaskStatus.DONE for t in result.state.tasks.values())


async def test_completed_task_is_answered_from_its_record_not_run_again(bus):
    reg, calls = CapabilityRegistry(), Counter()
    agent = runtime(counting_agent("once", lambda p, c: {"value": random.random()}, reg, calls), bus)
    await start_all([agent])
    client = await Requester(bus, "tester", registry=reg).start()
    first = new_request(sender="tester", recipient="once", capability="once.work", payload={"x": 1})
    r1 = [a async for a in client.stream(first, timeout=5)][-1]
    # A retry of the same task (new envelope, attempt 2, same idempotency key) and a redelivery-like resend.
    retry = new_request(sender="tester", recipient="once", capability="once.work", payload={"x": 1},
                        task_id=first.task_id, attempt=2, conversation_id=first.conversation_id)
    r2 = [a async for a in client.stream(retry, timeout=5)][-1]
    await stop_all([agent])
    assert r1.action is Action.RESPONSE and r2.action is Action.RESPONSE
    assert r2.payload == r1.payload  # the recorded answer
    assert calls[first.task_id] == 1


async def test_progress_heartbeats_keep_a_long_task_from_stalling(bus):
    reg, calls = CapabilityRegistry(), Counter()

    async def long_work(payload, ctx):
        for i in range(6):
            await asyncio.sleep(0.25)  # the work itself
            await ctx.progress(step=i)

    agent = runtime(counting_agent("long", long_work, reg, calls), bus)
    policy = TaskPolicy(receipt_timeout=1.0, stall_after=0.6, timeout=10.0, retry=RetryPolicy(1))
    orch = Orchestrator(bus, decomposer=FixedPlan([Step("l", "long.work", {})]), registry=reg,
                        policies=PolicySet(default=policy, rate=UNLIMITED))
    await start_all([agent])
    async with orch:
        result = await asyncio.wait_for(orch.run("test.run", {}), 10)
    await stop_all([agent])
    task = next(t for tid, t in result.state.tasks.items() if tid.endswith("_l"))
    assert result.status is ConversationStatus.DONE
    assert task.progress == 6 and task.attempts == 1 and not task.decisions
    assert task.duration_ms >= 6 * 250 > policy.stall_after * 1000


async def test_directory_lists_live_instances_with_schemas_and_forgets_stopped_ones(bus):
    reg, calls = CapabilityRegistry(), Counter()
    agent = counting_agent("dir", lambda p, c: None, reg, calls)
    a, b = runtime(agent, bus, instance="dir-a"), runtime(agent, bus, instance="dir-b")
    await start_all([a, b])
    directory = Directory(bus)
    live = await directory.live_types()
    assert sorted(i.instance for i in live["dir"]) == ["dir-a", "dir-b"]
    assert live["dir"][0].capabilities[0].name == "dir.work"
    assert live["dir"][0].capabilities[0].input_schema == {"type": "object"}
    await a.stop()
    live = await directory.live_types()
    assert [i.instance for i in live["dir"]] == ["dir-b"]
    await stop_all([b])


async def test_a_damaged_directory_entry_is_skipped_not_fatal(bus):
    reg, calls = CapabilityRegistry(), Counter()
    live = runtime(counting_agent("dir", lambda p, c: None, reg, calls), bus, instance="dir-a")
    await start_all([live])
    directory = Directory(bus)
    kv = await directory.bucket()
    await kv.put("dir.broken", b'{"agent": "dir"}')  # no instance, no capabilities
    await kv.put("other.junk", b"not json")
    types = await directory.live_types()
    await stop_all([live])
    assert [i.instance for i in types["dir"]] == ["dir-a"] and list(types) == ["dir"]


async def test_retry_gives_up_on_non_retryable_errors(bus):
    reg, calls = CapabilityRegistry(), Counter()

    def refuse(payload, ctx):
        raise AgentError("POLICY_VIOLATION", "this request can never succeed")

    agent = runtime(counting_agent("strict", refuse, reg, calls), bus)
    orch = Orchestrator(bus, decomposer=FixedPlan([Step("s", "strict.work", {})]), registry=reg,
                        policies=PolicySet(rate=UNLIMITED, default=TaskPolicy(retry=RetryPolicy(3, Backoff(0.01)))))
    await start_all([agent])
    async with orch:
        result = await asyncio.wait_for(orch.run("test.run", {}), 10)
    await stop_all([agent])
    assert result.status is ConversationStatus.FAILED
    assert sum(calls.values()) == 1
    assert "POLICY_VIOLATION" in result.outcome.reasons[0]


async def test_steps_started_together_all_route_by_the_directory(bus):
    # The capability's prefix names no agent type: only the directory knows that "summarizer" serves it.
    # Steps that start together must all wait for the router's first look at the directory, not route
    # by the naming convention while one of them reads it (a REQUEST to type "text" gets no receipt).
    reg, calls = CapabilityRegistry(), Counter()
    agent = Agent("summarizer", registry=reg)

    @agent.capability("text.summarize", input=dict, output=dict)
    async def summarize(payload: dict, ctx) -> dict:
        calls[ctx.task_id] += 1
        return {"n": payload["n"]}

    rt = runtime(agent, bus)
    await start_all([rt])
    steps = [Step(f"s{n}", "text.summarize", {"n": n}) for n in range(4)]
    fast_fail = TaskPolicy(receipt_timeout=0.5, retry=RetryPolicy(1))
    async with Orchestrator(bus, decomposer=FixedPlan(steps), registry=reg,
                            policies=PolicySet(rate=UNLIMITED, default=fast_fail)) as orch:
        result = await asyncio.wait_for(orch.run("test.run", {}), 10)
    await stop_all([rt])
    subtasks = result.state.subtasks
    assert result.status is ConversationStatus.DONE, result.outcome.reasons
    assert sorted(t.agent for t in subtasks) == ["summarizer"] * 4
    assert all(t.attempts == 1 and not t.decisions for t in subtasks)
    assert sum(calls.values()) == 4
