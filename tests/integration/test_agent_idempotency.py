"""Idempotency is a claim, not a lookup: concurrent duplicates run the handler once and share its result,
and a recorded result answers only the requester identity that caused it."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

from ledgerbus.agents.runtime import AgentRuntime
from ledgerbus.agents.sdk import Agent
from ledgerbus.bus.connection import Bus
from ledgerbus.bus.requester import Requester
from ledgerbus.bus.streams import ConsumerSettings
from ledgerbus.eventstore.fold import ConversationStatus, fold
from ledgerbus.eventstore.recorder import Recorder
from ledgerbus.orchestrator.backoff import Backoff, RetryPolicy
from ledgerbus.orchestrator.engine import Orchestrator
from ledgerbus.orchestrator.plan import Step
from ledgerbus.orchestrator.policy import PolicySet, RateLimitPolicy, TaskPolicy
from ledgerbus.schemas.capability import CapabilityRegistry
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import Envelope, new_request

from orchestration_harness import FixedPlan, wait_until


class Inbox:
    """Every answer addressed to `address`, by task id."""

    def __init__(self, bus: Bus, address: str = "tester") -> None:
        self.bus, self.address = bus, address
        self.seen: list[Envelope] = []

    async def start(self) -> "Inbox":
        async def on(msg: Any) -> None:
            self.seen.append(self.bus.codec.decode(msg.data))

        await self.bus.subscribe_inbox(self.address, on)
        return self

    def of(self, action: Action) -> list[Envelope]:
        return [e for e in self.seen if e.action is action]


def gated_agent(runs: Counter[str], gate: asyncio.Event, registry: CapabilityRegistry) -> Agent:
    agent = Agent("dup", registry=registry)

    @agent.capability("dup.work", input=dict, output=dict)
    async def work(inp: dict[str, Any], ctx: Any) -> dict[str, Any]:
        runs[ctx.idempotency_key] += 1
        await gate.wait()  # held until every duplicate has been taken by an instance
        return {"by": ctx.instance, "task": ctx.task_id, "run": runs[ctx.idempotency_key]}

    return agent


async def duplicates_at_once(bus: Bus, n: int, runtimes: list[AgentRuntime], runs: Counter[str],
                             gate: asyncio.Event) -> tuple[list[Envelope], list[Envelope]]:
    inbox = await Inbox(bus).start()
    reqs = [new_request(sender="tester", recipient="dup", capability="dup.work", payload={"i": i},
                        idempotency_key="one-key") for i in range(n)]
    for rt in runtimes:
        await rt.start()
    try:
        await asyncio.gather(*(bus.publish(r) for r in reqs))
        # Every duplicate received (ACKed) while the first handler is still held: they are concurrent.
        await wait_until(lambda: len(inbox.of(Action.ACK)) == n, 10, "an ACK for every duplicate")
        gate.set()
        await wait_until(lambda: len(inbox.of(Action.RESPONSE)) == n, 10, "a RESPONSE for every duplicate")
    finally:
        gate.set()
        for rt in runtimes:
            await rt.stop(drain=False)
    assert {e.causation_id for e in inbox.of(Action.RESPONSE)} == {r.id for r in reqs}
    return inbox.of(Action.ACK), inbox.of(Action.RESPONSE)


async def test_five_duplicates_at_once_run_the_handler_once(bus: Bus) -> None:
    reg, runs, gate = CapabilityRegistry(), Counter[str](), asyncio.Event()
    rt = AgentRuntime(gated_agent(runs, gate, reg), bus, concurrency=5, announce=False, dead_letters=False)
    _, responses = await duplicates_at_once(bus, 5, [rt], runs, gate)
    assert runs["one-key"] == 1
    assert len({msgspec_key(e.payload) for e in responses}) == 1, [e.payload for e in responses]


async def test_duplicates_across_two_instances_run_the_handler_once(bus: Bus) -> None:
    # Ten duplicates for two instances of five slots each: the held handler and the waiting duplicates
    # keep their slots, so each instance must take five of them.
    reg, runs, gate = CapabilityRegistry(), Counter[str](), asyncio.Event()
    agent = gated_agent(runs, gate, reg)
    a = AgentRuntime(agent, bus, instance="dup-a", concurrency=5, announce=False, dead_letters=False)
    b = AgentRuntime(agent, bus, instance="dup-b", concurrency=5, announce=False, dead_letters=False)
    acks, responses = await duplicates_at_once(bus, 10, [a, b], runs, gate)
    assert {e.payload["instance"] for e in acks} == {"dup-a", "dup-b"}
    assert runs["one-key"] == 1
    assert len({msgspec_key(e.payload) for e in responses}) == 1, [e.payload for e in responses]


def msgspec_key(payload: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(sorted(payload.items()))


async def test_a_recorded_result_answers_only_the_requester_that_caused_it(bus: Bus) -> None:
    reg, runs = CapabilityRegistry(), Counter[str]()
    writing = Agent("writing", registry=reg)

    @writing.capability("writing.draft", input=dict, output=dict)
    async def draft(inp: dict[str, Any], ctx: Any) -> dict[str, Any]:
        runs[ctx.envelope.sender] += 1
        return {"draft": f"secret draft for {ctx.envelope.sender}"}

    async with AgentRuntime(writing, bus, announce=False, dead_letters=False):
        orch = await Requester(bus, "orchestrator", registry=reg).start()
        research = await Requester(bus, "research", registry=reg).start()
        mine = await orch.request("writing", "writing.draft", {}, idempotency_key="conv-1/step-w", timeout=10)
        assert mine.payload == {"draft": "secret draft for orchestrator"}
        # Reading: research names the orchestrator's key and gets a run (and a record) of its own.
        theirs = await research.request("writing", "writing.draft", {}, idempotency_key="conv-1/step-w", timeout=10)
        assert theirs.payload == {"draft": "secret draft for research"}
        assert runs == {"orchestrator": 1, "research": 1}
        # Poisoning: research records a result for a key before the orchestrator uses it.
        await research.request("writing", "writing.draft", {}, idempotency_key="conv-2/step-w", timeout=10)
        later = await orch.request("writing", "writing.draft", {}, idempotency_key="conv-2/step-w", timeout=10)
        assert later.payload == {"draft": "secret draft for orchestrator"}
        assert runs == {"orchestrator": 2, "research": 2}
        # Each requester's own duplicate is still answered from its own record.
        again = await orch.request("writing", "writing.draft", {}, idempotency_key="conv-1/step-w", timeout=10)
        assert again.payload == mine.payload and runs == {"orchestrator": 2, "research": 2}
        await orch.stop()
        await research.stop()


async def test_a_handler_slower_than_the_stall_window_runs_once(bus: Bus, ledger: Any) -> None:
    """No ctx.progress(): the orchestrator declares attempt 1 stalled and retries with the same key while
    the handler still works. The retry waits for the claimant's result instead of running it again."""
    reg, runs = CapabilityRegistry(), Counter[str]()
    slow = Agent("slow", registry=reg)

    @slow.capability("slow.think", input=dict, output=dict)
    async def think(inp: dict[str, Any], ctx: Any) -> dict[str, Any]:
        runs[ctx.idempotency_key] += 1
        await asyncio.sleep(2.5)  # the work: longer than the 1 s stall window, without progress
        return {"thought": "deep"}

    policy = TaskPolicy(receipt_timeout=1.0, stall_after=1.0, timeout=15.0,
                        retry=RetryPolicy(3, Backoff(0.05, 2.0, 0.2)))
    orch = Orchestrator(bus, decomposer=FixedPlan([Step("t", "slow.think", {})]), registry=reg,
                        policies=PolicySet(default=policy, rate=RateLimitPolicy(global_rate=None, agent_rate=None)),
                        rng=random.Random(3))
    async with Recorder(bus, ledger) as rec, AgentRuntime(slow, bus, claim_lease=0.6, dead_letters=False):
        async with orch:
            result = await asyncio.wait_for(orch.run("test.run", {}), 20)
        task_id = f"{result.conversation_id}_t"  # the step's task

        def step_events() -> list[Envelope]:
            return [e for e in ledger.envelopes(result.conversation_id) if e.task_id == task_id]

        async def every_attempt_answered() -> bool:
            # The conversation may end on one attempt's RESPONSE while the other's is still on its way.
            await rec.catch_up()
            events = step_events()
            asked = {e.id for e in events if e.action is Action.REQUEST}
            return asked == {e.causation_id for e in events if e.action is Action.RESPONSE}

        for _ in range(200):
            if await every_attempt_answered():
                break
            await asyncio.sleep(0.05)
        assert await every_attempt_answered()
    assert result.status is ConversationStatus.DONE
    state = fold(ledger.envelopes(result.conversation_id))
    task = state.tasks[task_id]
    assert "STALLED" in [d.code for d in task.decisions] and task.attempt >= 2
    assert sum(runs.values()) == 1, runs
    events = step_events()
    answered = [e for e in events if e.action is Action.RESPONSE]
    assert {e.attempt for e in answered} == set(range(1, task.attempt + 1))
    assert all(e.payload == {"thought": "deep"} for e in answered)
    # While it waited, the retry said so (PROGRESS at each renewal of the claim), so it did not stall too.
    assert any(e.action is Action.PROGRESS and e.payload.get("waitingFor") for e in events)


async def test_a_dead_claimants_key_is_taken_over_after_its_lease(nats_server: Any, bus: Bus) -> None:
    """The claimant's connection dies mid-handler: its claim is no longer renewed, and the duplicate
    waiting on it claims the key once the lease has run out and runs the handler itself."""
    reg, runs, gate = CapabilityRegistry(), Counter[str](), asyncio.Event()
    entered: list[str] = []
    agent = Agent("dup", registry=reg)

    @agent.capability("dup.work", input=dict, output=dict)
    async def work(inp: dict[str, Any], ctx: Any) -> dict[str, Any]:
        runs[ctx.instance] += 1
        entered.append(ctx.instance)
        if ctx.instance == "dup-dying":
            await gate.wait()
        return {"by": ctx.instance}

    dying_bus = await Bus.connect(nats_server.url, prefix=nats_server.prefix, name="dying")
    settings = ConsumerSettings(ack_wait=30.0)
    dying = AgentRuntime(agent, dying_bus, instance="dup-dying", concurrency=1, claim_lease=0.6, consumer=settings,
                         announce=False, dead_letters=False)
    other = AgentRuntime(agent, bus, instance="dup-other", concurrency=4, claim_lease=0.6, consumer=settings,
                         announce=False, dead_letters=False)
    inbox = await Inbox(bus).start()
    try:
        await dying.start()
        first = new_request(sender="tester", recipient="dup", capability="dup.work", payload={}, idempotency_key="k")
        await bus.publish(first)
        await wait_until(lambda: entered == ["dup-dying"], 5, "the first claimant's handler")
        await other.start()
        dup = new_request(sender="tester", recipient="dup", capability="dup.work", payload={}, idempotency_key="k")
        await bus.publish(dup)
        await wait_until(lambda: any(e.causation_id == dup.id and e.action is Action.ACK for e in inbox.seen), 5,
                         "the duplicate's ACK")
        await dying_bus.nc.close()  # the claimant is gone: no renewal, no release
        await wait_until(lambda: any(e.causation_id == dup.id and e.action is Action.RESPONSE for e in inbox.seen),
                         10, "the duplicate's RESPONSE")
    finally:
        gate.set()
        await other.stop(drain=False)
        await dying.stop(drain=False)
        await dying_bus.close()
    (resp,) = [e for e in inbox.seen if e.causation_id == dup.id and e.action is Action.RESPONSE]
    assert resp.payload == {"by": "dup-other"}
    assert runs == {"dup-dying": 1, "dup-other": 1}
