"""The pipelined step (issue 8): receipt before the answer in the ledger, the idempotency record
written with the answer, heartbeats from a timer keeping a long silent handler's message."""

from __future__ import annotations

import asyncio
from collections import Counter

import msgspec

from ledgerbus.agents.results import ResultStore
from ledgerbus.agents.runtime import AgentRuntime
from ledgerbus.agents.sdk import Agent, AgentError
from ledgerbus.bus.requester import Requester
from ledgerbus.bus.streams import ConsumerSettings
from ledgerbus.eventstore.recorder import Recorder
from ledgerbus.schemas.capability import CapabilityRegistry


class Num(msgspec.Struct):
    n: int


async def test_step_order_and_record(bus, ledger):
    reg = CapabilityRegistry()
    agent = Agent("pipe", registry=reg)

    @agent.capability("pipe.double")
    async def double(inp: Num) -> Num:
        if inp.n < 0:
            raise AgentError("NEGATIVE", "no negatives")
        return Num(inp.n * 2)

    async with AgentRuntime(agent, bus) as rt, Recorder(bus, ledger) as rec:
        req = await Requester(bus, "tester", registry=reg).start()
        ok = await req.request("pipe", "pipe.double", {"n": 21}, timeout=5)
        bad = req.build("pipe", "pipe.double", {"n": -1})
        answers = [a async for a in req.stream(bad, timeout=5)]
        await rec.catch_up(holding=[ok.id, *(a.id for a in answers)])
        stored = await ResultStore(bus).get("pipe", "tester", ok.idempotency_key or ok.task_id)
        assert rt.handled == 1
    assert ok.payload == {"n": 42}
    assert stored is not None and stored.payload == {"n": 42} and stored.response_id == ok.id
    assert [a.action.value for a in answers] == ["ACK", "ERROR"] and answers[-1].error.code == "NEGATIVE"
    by_task: dict[str, list[str]] = {}
    for env in ledger.envelopes():
        by_task.setdefault(env.task_id, []).append(env.action.value)
    # The receipt is in the ledger before the answer, for a success and for a failure alike.
    assert by_task[ok.task_id] == ["REQUEST", "ACK", "RESPONSE"]
    assert by_task[bad.task_id] == ["REQUEST", "ACK", "ERROR"]


async def test_long_silent_handler_keeps_its_message(bus):
    reg, calls = CapabilityRegistry(), Counter()
    agent = Agent("slowpoke", registry=reg)
    release = asyncio.Event()

    @agent.capability("slowpoke.wait")
    async def wait(inp: Num) -> Num:
        calls[inp.n] += 1
        await release.wait()
        return inp

    # AckWait 1 s, heartbeat every 0.5 s: without in-progress acks the message would be redelivered
    # to the second instance while the first still works on it.
    settings = ConsumerSettings(ack_wait=1.0, max_deliver=5)
    a = await AgentRuntime(agent, bus, consumer=settings, instance="a").start()
    b = await AgentRuntime(agent, bus, consumer=settings, instance="b").start()
    try:
        req = await Requester(bus, "tester", registry=reg).start()
        pending = asyncio.create_task(req.request("slowpoke", "slowpoke.wait", {"n": 1}, timeout=10))
        for _ in range(100):  # until the handler has started (bounded)
            if calls[1]:
                break
            await asyncio.sleep(0.02)
        deadline = asyncio.get_running_loop().time() + 2.6  # over two AckWaits with the handler busy
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
            assert calls[1] == 1, "redelivered while the handler was still working"
        release.set()
        resp = await asyncio.wait_for(pending, 5)
        assert resp.payload == {"n": 1} and calls[1] == 1
    finally:
        release.set()
        await a.stop()
        await b.stop()


async def test_a_puback_that_never_comes_fails_the_step_instead_of_hanging_it(bus):
    rt = AgentRuntime(Agent("pipe", registry=CapabilityRegistry()), bus, announce=False, dead_letters=False)
    rt.publish_timeout = 0.05

    async def ignore(msg) -> None:
        return None

    silent = await bus.nc.subscribe("unacked.append", cb=ignore)  # takes appends, answers none
    await bus.nc.flush()
    stored = await bus.js.publish_async(f"{bus.subjects.prefix}.nobody.ACK.c1", b"{}")  # a real stream: a PubAck
    never = await bus.js.publish_async("unacked.append", b"x")
    confirming = asyncio.create_task(rt._confirm(stored, never))
    done, _ = await asyncio.wait({confirming}, timeout=5)
    assert confirming in done and isinstance(confirming.exception(), TimeoutError)
    assert stored.result().seq >= 1
    assert never.done() and isinstance(never.exception(), TimeoutError)
    await silent.unsubscribe()
