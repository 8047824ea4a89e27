"""Fuzz the orchestrator service: generated envelopes and raw bytes addressed to it never stop it serving,
and each one is in the ledger's mirror (as an event, or a reject with the reason)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from ledgerbus.agents.runtime import AgentRuntime
from ledgerbus.agents.sdk import Agent
from ledgerbus.bus.requester import Requester
from ledgerbus.eventstore.recorder import Recorder
from ledgerbus.orchestrator.engine import Orchestrator
from ledgerbus.orchestrator.plan import Plan, Step
from ledgerbus.orchestrator.policy import PolicySet, RateLimitPolicy
from ledgerbus.schemas.capability import CapabilityRegistry

from badinput import accounted
from fuzzgen import generate

N = 300


class OneStep:
    capabilities = ("calc.sum",)

    def plan(self, capability: str, request: Mapping[str, Any]) -> Plan:
        return Plan([Step("add", "calc.add", {"a": 1, "b": 2})])


async def test_fuzzed_requests_never_stop_the_orchestrator(bus, ledger):
    reg = CapabilityRegistry()
    calc = Agent("calc", registry=reg)

    @calc.capability("calc.add", input=dict, output=dict)
    async def add(inp: dict[str, Any], ctx: Any) -> dict[str, Any]:
        return {"sum": int(inp.get("a", 0)) + int(inp.get("b", 0))}

    reg.register("calc.sum", dict, dict)  # the orchestrator's own capability: any object is a valid request
    data = await asyncio.to_thread(generate, N, recipient="orchestrator", capabilities=("calc.sum", "calc.sum", "nope.x"))
    orch = Orchestrator(bus, decomposer=OneStep(), registry=reg,
                        policies=PolicySet(rate=RateLimitPolicy(global_rate=None, agent_rate=None)))
    stop, ready = asyncio.Event(), asyncio.Event()
    async with AgentRuntime(calc, bus, announce=False), Recorder(bus, ledger) as rec:
        serving = asyncio.create_task(orch.serve(recover=False, stop=stop, ready=ready))
        await asyncio.wait_for(ready.wait(), 10)
        subject = f"{bus.subjects.prefix}.orchestrator.REQUEST"
        for i, raw in enumerate(data):
            await bus.publish_raw(f"{subject}.fuzz-{i}", raw, {"Lb-Sender": "tester"})
        # It still serves: a valid request from a client gets the conversation's RESPONSE.
        client = await Requester(bus, "client", registry=reg).start()
        resp = await client.request("orchestrator", "calc.sum", {"x": 1}, timeout=30)
        assert resp.payload is not None
        assert not serving.done(), "the orchestrator's serve loop ended"
        # Every message it was sent is in the ledger's mirror (an event or a reject). Requests whose handling
        # failed stay unacknowledged and come back after AckWait: not lost, not dropped.
        await accounted(bus, ledger, rec, holding=[resp.id])
        assert not rec.gaps
        stop.set()
        await asyncio.wait_for(serving, 10)
        await orch.stop()
