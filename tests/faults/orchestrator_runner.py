"""An orchestrator in its own process, for fault tests: runs a fan-out/fan-in plan, or recovers one.

    python orchestrator_runner.py URL PREFIX CONV_ID run|recover

Plan: s1..s4 (worka) in parallel → j (workb) → c1 → … → c8 (alternating workers, one after another),
long enough that a kill at a random moment usually lands mid-conversation.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ledgerbus.bus.connection import Bus  # noqa: E402
from ledgerbus.orchestrator.engine import Orchestrator  # noqa: E402
from ledgerbus.schemas.capability import CapabilityRegistry  # noqa: E402
from ledgerbus.orchestrator.plan import Plan, Step  # noqa: E402
from ledgerbus.orchestrator.policy import PolicySet, RateLimitPolicy  # noqa: E402

CHAIN = 8
STEPS = ["s1", "s2", "s3", "s4", "j", *(f"c{i}" for i in range(1, CHAIN + 1))]


class FanOutIn:
    capabilities = frozenset({"test.fan"})

    def plan(self, capability: str, request: Mapping[str, Any]) -> Plan:
        return Plan([
            *(Step(f"s{i}", "worka.work", {"n": i}) for i in range(1, 5)),
            Step("j", "workb.work", {"n": 5}, depends_on=("s1", "s2", "s3", "s4")),
            *(Step(f"c{i}", f"work{'ab'[i % 2]}.work", {"n": 5 + i}, depends_on=(f"c{i - 1}" if i > 1 else "j",))
              for i in range(1, CHAIN + 1)),
        ])


def make(bus: Bus) -> Orchestrator:
    # The service refuses a capability with no schema: the fan-out's takes any object.
    registry = CapabilityRegistry()
    registry.register("test.fan")
    # A short conductor lease: a replacement takes a killed orchestrator's conversation over within a second.
    return Orchestrator(bus, decomposer=FanOutIn(), lease=1.0, registry=registry,
                        policies=PolicySet(rate=RateLimitPolicy(global_rate=None, agent_rate=None)))


async def main(url: str, prefix: str, conversation_id: str, mode: str) -> None:
    bus = await Bus.connect(url, prefix=prefix, name=f"orchestrator-{mode}")
    async with make(bus) as orch:
        if mode == "run":
            await orch.run("test.fan", {}, conversation_id=conversation_id)
        else:
            await orch.recover()
    await bus.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
