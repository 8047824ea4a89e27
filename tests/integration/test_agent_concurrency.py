"""An agent instance never runs more handlers at once than its `concurrency`, whatever a fetch returns."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from ledgerbus.agents.runtime import AgentRuntime
from ledgerbus.agents.sdk import Agent
from ledgerbus.bus.requester import Requester
from ledgerbus.schemas.capability import CapabilityRegistry


async def test_bursts_against_short_fetches_never_exceed_the_concurrency(bus: Any) -> None:
    # A pull request that outlives its short fetch delivers late into the subscription, and nats-py's
    # next fetch hands over everything waiting, more than it asked for: those beyond the free slots
    # must go back for redelivery, not run.
    reg, rng = CapabilityRegistry(), random.Random(5)
    agent = Agent("limited", registry=reg)
    running, most, served = [0], [0], [0]

    @agent.capability("limited.go")
    async def go(inp: dict) -> dict:
        running[0] += 1
        most[0] = max(most[0], running[0])
        await asyncio.sleep(rng.random() * 0.03)  # the work
        running[0] -= 1
        served[0] += 1
        return {}

    sent = 0
    async with AgentRuntime(agent, bus, concurrency=3, fetch_timeout=0.02, dead_letters=False, announce=False):
        client = await Requester(bus, "tester", registry=reg).start()
        for _ in range(20):
            n = rng.randint(1, 12)
            sent += n
            await asyncio.gather(*(client.request("limited", "limited.go", {}, timeout=20) for _ in range(n)))
            await asyncio.sleep(rng.random() * 0.1)  # idle: short fetches time out with their pulls pending
        await client.stop()
    assert most[0] <= 3
    assert served[0] >= sent  # every request answered (a surplus message is redelivered, not lost)
