"""A hung handler cannot stop an agent: every request runs under a time limit (its deadline, else its
capability's timeout), past which the handler is cancelled, TIMED_OUT answered and the slot freed; a
handler that ignores the cancellation is abandoned and counted."""

from __future__ import annotations

import asyncio
from typing import Any

from ledgerbus.agents.directory import Directory
from ledgerbus.agents.runtime import AgentRuntime
from ledgerbus.agents.sdk import Agent
from ledgerbus.bus.connection import Bus
from ledgerbus.bus.requester import Requester
from ledgerbus.bus.streams import consumer_name
from ledgerbus.ids import now_ms
from ledgerbus.schemas.capability import CapabilityRegistry
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import Envelope

from orchestration_harness import wait_until


async def test_four_hung_handlers_do_not_stop_an_agent_of_concurrency_four(bus: Bus) -> None:
    reg = CapabilityRegistry()
    agent = Agent("stuck", registry=reg)
    entered: list[str] = []
    done = asyncio.Event()  # lets the handler that ignores cancellation end with the test
    never = asyncio.Event()

    @agent.capability("stuck.hang", input=dict, output=dict, timeout=1.0)
    async def hang(inp: dict[str, Any]) -> dict[str, Any]:
        entered.append("hang")
        await never.wait()
        return {}

    @agent.capability("stuck.wait", input=dict, output=dict)  # no declared timeout: the deadline cuts it
    async def wait(inp: dict[str, Any]) -> dict[str, Any]:
        entered.append("wait")
        await never.wait()
        return {}

    @agent.capability("stuck.deaf", input=dict, output=dict, timeout=1.0)
    async def deaf(inp: dict[str, Any]) -> dict[str, Any]:
        entered.append("deaf")
        while not done.is_set():
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                continue  # ignores its cancellation
        return {}

    @agent.capability("stuck.quick", input=dict, output=dict)
    async def quick(inp: dict[str, Any]) -> dict[str, Any]:
        return {"n": inp["n"]}

    rt = AgentRuntime(agent, bus, instance="stuck-1", concurrency=4, dead_letters=False, cancel_grace=0.5)
    try:
        await rt.start()
        client = await Requester(bus, "tester", registry=reg).start()
        hung: list[asyncio.Task[list[Envelope]]] = []

        async def answers(env: Envelope) -> list[Envelope]:
            return [a async for a in client.stream(env, timeout=20)]

        for cap, kw in (("stuck.hang", {}), ("stuck.hang", {}), ("stuck.deaf", {}),
                        ("stuck.wait", {"deadline": now_ms() + 1500})):
            hung.append(asyncio.create_task(answers(client.build("stuck", cap, {}, **kw))))
        await wait_until(lambda: len(entered) == 4, 5, "four hung handlers holding every slot")
        quick_answers = await asyncio.gather(*(
            answers(client.build("stuck", "stuck.quick", {"n": i})) for i in range(10)))
        for i, got in enumerate(quick_answers):
            assert [a.action for a in got] == [Action.ACK, Action.RESPONSE] and got[-1].payload == {"n": i}
        for task in hung:
            got = await asyncio.wait_for(task, 10)
            last = got[-1]
            assert last.action is Action.ERROR and last.error is not None, got
            assert last.error.code == "TIMED_OUT" and last.error.retryable, last.error
        abandoned = [t.result()[-1] for t in hung if t.result()[-1].error.details.get("abandoned")]  # type: ignore[union-attr]
        assert [e.capability for e in abandoned] == ["stuck.deaf"]
        assert rt.abandoned == 1
        # The directory shows it too; and no hung message is kept alive or waits for redelivery.
        async def entry_abandoned() -> int:
            (me,) = [i for i in await Directory(bus).instances() if i.instance == "stuck-1"]
            return me.abandoned

        for _ in range(100):
            if await entry_abandoned() == 1:
                break
            await asyncio.sleep(0.05)
        assert await entry_abandoned() == 1
        info = await bus.js.consumer_info(bus.subjects.stream, consumer_name("stuck"))
        assert info.num_ack_pending == 0 and info.num_redelivered == 0
        await client.stop()
    finally:
        done.set()
        await rt.stop(drain=False)
