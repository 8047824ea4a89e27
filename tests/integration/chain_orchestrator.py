"""An orchestrator process for the crash-recovery test: `python chain_orchestrator.py URL PREFIX CONV_ID`.

Plan: a1, a2 (stepa) in parallel → b (stepb) → c1, c2, c3 (stepa) in parallel.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from typing import Any

from ledgerbus.bus.connection import Bus
from ledgerbus.orchestrator.engine import Orchestrator
from ledgerbus.orchestrator.plan import Plan, Step
from ledgerbus.orchestrator.policy import PolicySet, RateLimitPolicy, TaskPolicy

# This test is about crash recovery, not receipts: generous windows so a loaded machine cannot turn a
# slow ACK into a retry that the exactly-once assertions would then count.
PATIENT = TaskPolicy(receipt_timeout=15.0, stall_after=30.0, timeout=60.0)


class Chain:
    capabilities = frozenset({"test.chain"})

    def plan(self, capability: str, request: Mapping[str, Any]) -> Plan:
        return Plan([
            Step("a1", "stepa.work", {"n": 1}),
            Step("a2", "stepa.work", {"n": 2}),
            Step("b", "stepb.work", {"n": 3}, depends_on=("a1", "a2")),
            *(Step(f"c{i}", "stepa.work", {"n": 3 + i}, depends_on=("b",)) for i in (1, 2, 3)),
        ])


def make(bus: Bus, *, rate: RateLimitPolicy | None = None) -> Orchestrator:
    # A short conductor lease: the replacement takes the killed orchestrator's conversation over within a second.
    return Orchestrator(bus, decomposer=Chain(), lease=1.0, policies=PolicySet(
        default=PATIENT, rate=rate or RateLimitPolicy(global_rate=None, agent_rate=None)))


async def main(url: str, prefix: str, conversation_id: str) -> None:
    bus = await Bus.connect(url, prefix=prefix, name="chain-orchestrator")
    async with make(bus) as orch:
        print("started", flush=True)
        await orch.run("test.chain", {}, conversation_id=conversation_id)
    print("finished", flush=True)  # the test kills us before this


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
