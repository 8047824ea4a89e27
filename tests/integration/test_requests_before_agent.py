"""Issue 18.5: a REQUEST published to an agent type that has never run waits for its first instance."""

from __future__ import annotations

import asyncio
from collections import Counter

from ledgerbus.agents.runtime import AgentRuntime
from ledgerbus.bus.connection import Bus
from ledgerbus.bus.consumers import PLACEHOLDER
from ledgerbus.bus.requester import Requester
from ledgerbus.bus.streams import ConsumerSettings, consumer_name
from ledgerbus.eventstore.fold import ConversationStatus, fold
from ledgerbus.eventstore.recorder import Recorder
from ledgerbus.orchestrator.engine import Orchestrator
from ledgerbus.schemas.capability import CapabilityRegistry
from ledgerbus.schemas.codes import Action

from ledgerbus.orchestrator.plan import Step

from orchestration_harness import FixedPlan, counting_agent


async def test_request_published_before_its_type_ever_ran_is_answered_when_the_first_instance_starts(bus, ledger):
    reg, calls = CapabilityRegistry(), Counter()
    late = counting_agent("late", lambda p, c: {"got": p["n"]}, reg, calls)
    client = await Requester(bus, "cli", registry=reg).start()
    env = client.build("late", "late.work", {"n": 7})
    answer = asyncio.ensure_future(_ask(client, env))
    async with Recorder(bus, ledger) as rec:
        await rec.catch_up(holding=[env.id])  # the REQUEST is in the ledger before any `late` instance exists
        info = await bus.js.consumer_info(bus.subjects.stream, consumer_name("late"))
        assert info.config.description == PLACEHOLDER and info.num_pending == 1
        # The first instance brings the consumer to its own settings and takes the queued request.
        runtime = await AgentRuntime(late, bus, announce=False, consumer=ConsumerSettings(ack_wait=7.0)).start()
        try:
            got = await asyncio.wait_for(answer, 20)
            info = await bus.js.consumer_info(bus.subjects.stream, consumer_name("late"))
        finally:
            await runtime.stop()
        await rec.catch_up(holding=[got.id])
    await client.stop()
    assert got.action is Action.RESPONSE and got.payload == {"got": 7}
    assert info.config.ack_wait == 7.0 and info.config.description is None
    responses = [e for e in ledger.envelopes(env.conversation_id) if e.action is Action.RESPONSE]
    assert len(responses) == 1 and calls[env.task_id] == 1


async def _ask(client: Requester, env):
    async for ans in client.stream(env, timeout=20):
        if ans.action in (Action.RESPONSE, Action.ERROR):
            return ans


async def test_the_first_request_makes_sure_of_the_consumer_once_per_type(bus):
    """After the first REQUEST to a type, a connection does not ask again (nothing on the hot path)."""
    client = await Requester(bus, "cli").start()
    env = client.build("gone", "gone.work", {})
    await bus.publish(env)
    await bus.js.delete_consumer(bus.subjects.stream, consumer_name("gone"))
    await bus.publish(client.build("gone", "gone.work", {}))
    names = [c.name async for c in _consumers(bus)]
    await client.stop()
    assert consumer_name("gone") not in names


async def _consumers(bus: Bus):
    for info in await bus.js.consumers_info(bus.subjects.stream):
        yield info


async def test_a_request_to_the_orchestrator_before_any_service_ran_is_conducted_when_one_starts(bus, ledger):
    reg, calls = CapabilityRegistry(), Counter()
    reg.register("test.run")
    work = counting_agent("work", lambda p, c: None, reg, calls)
    client = await Requester(bus, "cli", registry=reg).start()
    env = client.build("orchestrator", "test.run", {})
    answer = asyncio.ensure_future(_ask(client, env))
    runtime = await AgentRuntime(work, bus, announce=False).start()
    async with Recorder(bus, ledger) as rec:
        await rec.catch_up(holding=[env.id])
        orch = Orchestrator(bus, decomposer=FixedPlan([Step("s", "work.work", {})]), registry=reg, use_directory=False)
        stop, ready = asyncio.Event(), asyncio.Event()
        # recover=False: the request must be delivered to the service, not found by reading the ledger back.
        service = asyncio.create_task(orch.serve(stop=stop, ready=ready, recover=False))
        try:
            got = await asyncio.wait_for(answer, 20)
        finally:
            stop.set()
            await asyncio.wait_for(service, 10)
            await orch.stop()
            await runtime.stop()
        await rec.catch_up(holding=[got.id])
    await client.stop()
    assert got.action is Action.RESPONSE
    state = fold(ledger.envelopes(env.conversation_id))
    assert state.status is ConversationStatus.DONE and calls[f"{env.conversation_id}_s"] == 1
