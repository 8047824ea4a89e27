"""The orchestrator itself through a server kill -9: conversations in flight when nats-server dies finish
after it restarts on the same store, with every step done (agents and orchestrator reconnect by themselves)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from ledgerbus.agents.runtime import AgentRuntime
from ledgerbus.agents.sdk import Agent
from ledgerbus.bus.connection import Bus
from ledgerbus.bus.server import EmbeddedServer, ServerConfig
from ledgerbus.bus.streams import ConsumerSettings
from ledgerbus.eventstore.fold import ConversationStatus
from ledgerbus.ids import uuid7
from ledgerbus.schemas.capability import CapabilityRegistry

from faulthelp import eventually
from ledgerbus.orchestrator.engine import Orchestrator
from ledgerbus.orchestrator.policy import PolicySet, RateLimitPolicy

from orchestrator_runner import STEPS, FanOutIn

CONVERSATIONS = 12


def worker(name: str, calls: Counter[str]) -> Agent:
    agent = Agent(name, registry=CapabilityRegistry())

    @agent.capability(f"{name}.work", input=dict, output=dict)
    async def work(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
        calls[ctx.task_id] += 1
        await asyncio.sleep(0.02)
        return {"n": payload.get("n")}

    return agent


@pytest.mark.slow
async def test_orchestrated_conversations_survive_a_server_kill(tmp_path):
    server = await asyncio.to_thread(EmbeddedServer(ServerConfig(data_dir=tmp_path / "nats")).start)
    calls: Counter[str] = Counter()
    buses = [await Bus.connect(server.url, name=f"p{i}") for i in range(3)]
    runtimes = [await AgentRuntime(worker(n, calls), b, announce=False,
                                   consumer=ConsumerSettings(ack_wait=2.0, max_deliver=-1)).start()
                for n, b in (("worka", buses[0]), ("workb", buses[1]))]
    # Default breakers: failures while the orchestrator's own bus is in trouble are not charged to agents.
    orch = Orchestrator(buses[2], decomposer=FanOutIn(), policies=PolicySet(
        rate=RateLimitPolicy(global_rate=None, agent_rate=None)))
    convs = [uuid7() for _ in range(CONVERSATIONS)]
    try:
        async with orch:
            runs = asyncio.gather(*(orch.run("test.fan", {}, conversation_id=c) for c in convs))
            await eventually(lambda: sum(calls.values()) >= CONVERSATIONS * len(STEPS) * 0.3, 60, "progress")
            server.kill()
            server.config.port, server.owned = server.port or 0, False
            await asyncio.to_thread(server.start)
            results = await asyncio.wait_for(runs, 120)
        statuses = Counter(r.status for r in results)
        why = {(t.status.value, t.error.code, t.error.message[:120]) for r in results for t in r.state.tasks.values()
               if t.error is not None}
        assert statuses == {ConversationStatus.DONE: CONVERSATIONS}, (statuses, why)
        assert len(calls) == CONVERSATIONS * len(STEPS)
    finally:
        for rt in runtimes:
            await rt.stop(drain=False)
        for b in buses:
            await b.close()
        await asyncio.to_thread(server.stop)
