"""kill -9 an orchestrator mid-conversation, then start two replacements at once — a same-named service and
an `Orchestrator.recover()` — and the conversation is conducted to its end by exactly one of them."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from ledgerbus.agents.runtime import AgentRuntime
from ledgerbus.agents.sdk import Agent
from ledgerbus.bus.connection import Bus
from ledgerbus.eventstore.fold import ConversationStatus, TaskStatus, fold
from ledgerbus.eventstore.recorder import Recorder
from ledgerbus.ids import uuid7
from ledgerbus.schemas.capability import CapabilityRegistry
from ledgerbus.schemas.codes import Action

from faulthelp import eventually, kill9, spawn
from orchestrator_runner import STEPS, make


def worker(name: str, calls: Counter[str]) -> Agent:
    agent = Agent(name, registry=CapabilityRegistry())

    @agent.capability(f"{name}.work", input=dict, output=dict)
    async def work(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
        calls[ctx.task_id] += 1
        await asyncio.sleep(0.2)
        return {"n": payload.get("n"), "by": name}

    return agent


async def test_two_replacements_of_a_killed_orchestrator_conduct_its_conversation_once(nats_server, bus, ledger, tmp_path):
    calls: Counter[str] = Counter()
    runtimes = [await AgentRuntime(worker(n, calls), bus, announce=False).start() for n in ("worka", "workb")]
    conv = uuid7()
    buses = [await Bus.connect(nats_server.url, prefix=nats_server.prefix, name=f"replacement-{i}") for i in (1, 2)]
    service, recovering = make(buses[0]), make(buses[1])
    stop, ready = asyncio.Event(), asyncio.Event()
    try:
        async with Recorder(bus, ledger):
            def done() -> int:
                evs = ledger.envelopes(conv)
                return sum(t.status is TaskStatus.DONE for t in fold(evs).tasks.values()) if evs else 0

            proc = await spawn("orchestrator_runner.py", nats_server.url, nats_server.prefix, conv, "run",
                               log=tmp_path / "orchestrator.log")
            try:
                await eventually(lambda: done() >= 2, 30, "the first tasks to finish")
            finally:
                await kill9(proc)
            left = len(STEPS) + 1 - done()
            assert left > 1  # killed mid-conversation: tasks (and the final answer) were still to come
            served = asyncio.create_task(service.serve(stop=stop, ready=ready))  # its start recovers too
            async with recovering:
                results = await asyncio.wait_for(recovering.recover(), 60)
            await asyncio.wait_for(ready.wait(), 60)
            await eventually(lambda: fold(ledger.envelopes(conv)).status is not ConversationStatus.RUNNING, 60,
                             "the conversation to end")
            stop.set()
            await asyncio.wait_for(served, 15)
            await service.stop()
    finally:
        for b in buses:
            await b.close()
        for rt in runtimes:
            await rt.stop(drain=False)
    events = ledger.envelopes(conv)
    state = fold(events)
    assert state.status is ConversationStatus.DONE
    requests = Counter(e.task_id for e in events if e.action is Action.REQUEST and e.task_id != state.root_task_id)
    assert len(requests) == len(STEPS) and set(requests.values()) == {1}, requests
    finals = [e for e in events if e.task_id == state.root_task_id and e.action in (Action.RESPONSE, Action.ERROR)]
    assert len(finals) == 1, [(e.sender, e.action.value) for e in finals]
    assert set(calls.values()) == {1} and len(calls) == len(STEPS), calls
    # One of the two took it over; the other saw its claim renewed and left it alone.
    assert (service.sent_requests > 0) != (recovering.sent_requests > 0), (service.sent_requests, len(results))
