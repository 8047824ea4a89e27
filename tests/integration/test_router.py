"""The router's view of the agent directory: one shared read, never on the hot path once known."""

from __future__ import annotations

import asyncio
from typing import Any

from orchestration_harness import runtime, start_all, stop_all

from ledgerbus.agents.directory import Directory, InstanceInfo
from ledgerbus.agents.sdk import Agent
from ledgerbus.orchestrator.breaker import BreakerRegistry
from ledgerbus.orchestrator.router import Router
from ledgerbus.schemas.capability import CapabilityRegistry


class GatedDirectory(Directory):
    """The real directory, whose reads wait at a gate the test opens, and are counted."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()
        self.left = asyncio.Event()
        self.reads = 0

    async def live_types(self) -> dict[str, list[InstanceInfo]]:
        self.reads += 1
        self.entered.set()
        try:
            await self.gate.wait()
            return await super().live_types()
        finally:
            self.left.set()


def serving(agent_type: str, capability: str, registry: CapabilityRegistry) -> Agent:
    agent = Agent(agent_type, registry=registry)

    @agent.capability(capability, input=dict, output=dict)
    async def work(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
        return {}

    return agent


async def test_a_known_capability_is_routed_while_a_newer_read_waits_and_an_unknown_one_waits_for_it(bus):
    reg = CapabilityRegistry()
    summarizer = runtime(serving("summarizer", "text.summarize", reg), bus)
    await start_all([summarizer])
    directory = GatedDirectory(bus)
    router, breakers = Router(directory=directory), BreakerRegistry()
    # Routed together before anything is known: one read, and both wait for it.
    first = await asyncio.gather(*(router.route("text.summarize", breakers) for _ in range(3)))
    assert first == [("summarizer", [])] * 3 and directory.reads == 1

    translator = runtime(serving("translator", "text.translate", reg), bus)
    await start_all([translator])
    directory.gate.clear()
    directory.entered.clear()
    router.refresh = 0.0  # the next route starts a new read, which now waits at the gate
    known = await asyncio.wait_for(router.route("text.summarize", breakers), 5)
    assert known == ("summarizer", [])  # answered from the view while the read is held
    await asyncio.wait_for(directory.entered.wait(), 5)
    unknown = asyncio.create_task(router.route("text.translate", breakers))
    cancelled = asyncio.create_task(router.route("text.translate", breakers))
    await asyncio.sleep(0)  # one turn of the loop: both run up to their wait for the read (nothing before it yields)
    cancelled.cancel()
    directory.gate.set()
    # The new type is found by the read the caller waited for, not guessed from the name ("text"); the
    # waiter that was cancelled did not take the read with it.
    assert await asyncio.wait_for(unknown, 5) == ("translator", [])
    assert cancelled.cancelled() and directory.reads == 2
    await stop_all([summarizer, translator])


async def test_close_stops_a_read_in_progress(bus):
    directory = GatedDirectory(bus)
    directory.gate.clear()
    router = Router(directory=directory)
    waiter = asyncio.create_task(router.route("text.summarize", BreakerRegistry()))
    await asyncio.wait_for(directory.entered.wait(), 5)
    await router.close()
    assert directory.left.is_set()
    # The caller waiting for it routes by convention rather than hanging.
    assert await asyncio.wait_for(waiter, 5) == ("text", [])
