"""Test scaffolding for orchestrator tests: fixed plans and agents that misbehave on purpose."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ledgerbus.agents.runtime import AgentRuntime
from ledgerbus.agents.sdk import Agent
from ledgerbus.bus.connection import Bus
from ledgerbus.eventstore.fold import ConversationState
from ledgerbus.orchestrator.plan import Plan, PlanContext, Step
from ledgerbus.schemas.capability import CapabilityRegistry

import msgspec


class FixedPlan:
    """A decomposer that always returns the same steps (for capability `test.run`, or those it is given)."""

    def __init__(self, steps: Sequence[Step] | Callable[[Mapping[str, Any]], Sequence[Step]], *,
                 capabilities: Sequence[str] = ("test.run",)) -> None:
        self.steps = steps
        self.capabilities = frozenset(capabilities)

    def plan(self, capability: str, request: Mapping[str, Any]) -> Plan:
        return Plan(self.steps(request) if callable(self.steps) else self.steps)


def echo_input(step_id: str) -> Callable[[PlanContext], dict[str, Any]]:
    def build(ctx: PlanContext) -> dict[str, Any]:
        return {"step": step_id, "seen": sorted(ctx.results)}

    return build


def counting_agent(name: str, behaviour: Callable[[dict[str, Any], Any], Any], registry: CapabilityRegistry,
                   calls: Counter[str], *, timeout: float | None = None) -> Agent:
    """An agent with one capability `<name>.work` that counts handler runs per task id."""
    agent = Agent(name, registry=registry)

    @agent.capability(f"{name}.work", input=dict, output=dict, timeout=timeout)
    async def work(payload: dict[str, Any], ctx) -> dict[str, Any]:
        calls[ctx.task_id] += 1
        out = behaviour(payload, ctx)
        if asyncio.iscoroutine(out):
            out = await out
        return out if isinstance(out, dict) else {"ok": True, "by": ctx.instance, "attempt": ctx.attempt}

    return agent


async def start_all(runtimes: Sequence[AgentRuntime]) -> None:
    await asyncio.gather(*(r.start() for r in runtimes))


async def stop_all(runtimes: Sequence[AgentRuntime]) -> None:
    await asyncio.gather(*(r.stop(drain=False) for r in runtimes), return_exceptions=True)


#: The fold's observed times: the live orchestrator's are its own clock's, a replay's JetStream's stored
#: times (DESIGN.md, "Time is the observer's"), so the two differ by the delivery latency.
STATE_TIMES = ("started_at", "ended_at", "last_timestamp")
TASK_TIMES = ("requested_at", "sent_at", "acked_at", "last_activity_at", "finished_at")


def comparable(st: ConversationState) -> dict[str, Any]:
    """State without ledger positions (the live fold does not know JetStream sequences) nor observed times."""
    data: dict[str, Any] = msgspec.to_builtins(st)
    data.pop("last_position", None)
    for k in STATE_TIMES:
        data.pop(k, None)
    for t in data["tasks"].values():
        t.pop("last_position", None)
        for k in TASK_TIMES:
            t.pop(k, None)
        for d in [*t["decisions"], *t["late"], *([t["answered"]] if t["answered"] else [])]:
            d.pop("position", None)
            d.pop("timestamp", None)
    return data


async def wait_until(pred: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def runtime(agent: Agent, bus: Bus, **kw: Any) -> AgentRuntime:
    return AgentRuntime(agent, bus, **kw)
