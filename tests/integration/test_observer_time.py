"""Issue 19, clocks: stall windows run on the observer's time, never on an agent's `timestamp`.

Agents here run the real runtime on a bus that stamps every envelope they send an hour ahead (or behind)
of the truth, as an agent on a host with a wrong clock would. The live orchestrator measures on its own
clock; `ledgerbus stalls`, from the live stream or a recorded SQLite file, on JetStream's stored times.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from orchestration_harness import FixedPlan, counting_agent, start_all, stop_all

from ledgerbus.agents.runtime import AgentRuntime
from ledgerbus.bus.connection import Bus
from ledgerbus.bus.requester import Requester
from ledgerbus.eventstore.fold import ConversationStatus
from ledgerbus.eventstore.recorder import Recorder
from ledgerbus.orchestrator.backoff import RetryPolicy
from ledgerbus.orchestrator.engine import Orchestrator
from ledgerbus.orchestrator.plan import Step
from ledgerbus.orchestrator.policy import PolicySet, RateLimitPolicy, TaskPolicy
from ledgerbus.schemas.capability import CapabilityRegistry
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import Envelope

HOUR_MS = 3_600_000
UNLIMITED = RateLimitPolicy(global_rate=None, agent_rate=None)


class SkewedBus:
    """A Bus whose sender's clock is `skew_ms` off: every envelope it publishes carries the wrong time."""

    def __init__(self, bus: Bus, skew_ms: int) -> None:
        self._bus = bus
        self.skew_ms = skew_ms

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bus, name)

    def _skew(self, env: Envelope) -> Envelope:
        env.timestamp += self.skew_ms
        return env

    async def publish(self, env: Envelope, **kw: Any) -> Any:
        return await self._bus.publish(self._skew(env), **kw)

    async def publish_async(self, env: Envelope) -> Any:
        return await self._bus.publish_async(self._skew(env))


def skewed_agent(bus: Bus, name: str, skew_ms: int, behaviour: Any, reg: CapabilityRegistry) -> AgentRuntime:
    agent = counting_agent(name, behaviour, reg, Counter())
    return AgentRuntime(agent, SkewedBus(bus, skew_ms), dead_letters=False)  # type: ignore[arg-type]


async def hang(payload: dict[str, Any], ctx: Any) -> None:
    await asyncio.Event().wait()  # ACKed (the runtime did), then silent until cancelled


def orchestrator(bus: Bus, reg: CapabilityRegistry, capability: str, policy: TaskPolicy) -> Orchestrator:
    return Orchestrator(bus, decomposer=FixedPlan([Step("s", capability, {"x": 1})]), registry=reg,
                        policies=PolicySet(default=policy, rate=UNLIMITED), rng=random.Random(1))


async def test_an_agent_an_hour_ahead_that_acks_then_goes_silent_is_stalled_within_the_stall_window(bus):
    reg = CapabilityRegistry()
    agent = skewed_agent(bus, "ahead", +HOUR_MS, hang, reg)
    policy = TaskPolicy(receipt_timeout=2.0, stall_after=1.0, timeout=20.0, retry=RetryPolicy(max_attempts=1))
    await start_all([agent])
    try:
        async with orchestrator(bus, reg, "ahead.work", policy) as orch:
            t0 = time.monotonic()
            result = await asyncio.wait_for(orch.run("test.run", {}), 15)
            elapsed = time.monotonic() - t0
    finally:
        await stop_all([agent])
    step = next(t for t in result.state.subtasks)
    assert [d.code for d in step.decisions] == ["STALLED"], step.decisions
    assert step.acked_at is not None and step.acked_at < step.decisions[0].timestamp
    # The window ran from when the orchestrator saw the ACK, on its own clock.
    silent = step.decisions[0].timestamp - step.acked_at
    assert 1_000 <= silent < 5_000, silent
    assert elapsed < 10.0  # not the 20 s task timeout
    assert result.status is ConversationStatus.FAILED


async def test_an_agent_an_hour_behind_is_not_stalled_while_it_reports_progress(bus):
    reg = CapabilityRegistry()

    async def work_with_heartbeats(payload: dict[str, Any], ctx: Any) -> None:
        # Twice the stall window in all, a PROGRESS every 0.3 s: alive throughout. Stamped an hour ago,
        # each would look like no sign of life at all on the sender's clock.
        for i in range(7):
            await ctx.progress(step=i)
            await asyncio.sleep(0.3)

    agent = skewed_agent(bus, "behind", -HOUR_MS, work_with_heartbeats, reg)
    policy = TaskPolicy(receipt_timeout=2.0, stall_after=1.0, timeout=20.0, retry=RetryPolicy(max_attempts=1))
    await start_all([agent])
    try:
        async with orchestrator(bus, reg, "behind.work", policy) as orch:
            result = await asyncio.wait_for(orch.run("test.run", {}), 15)
    finally:
        await stop_all([agent])
    step = next(t for t in result.state.subtasks)
    assert result.status is ConversationStatus.DONE, result.outcome.reasons
    assert step.decisions == [] and step.attempts == 1 and step.progress == 7
    assert step.acked_at is not None and step.finished_at is not None
    assert 2_000 <= step.finished_at - step.acked_at < 10_000  # observed times: no hour in between


# -- `ledgerbus stalls`: JetStream's stored times ---------------------------------------------------

async def stalls(server: Any, *args: str) -> list[dict[str, Any]]:
    """`ledgerbus stalls ARGS --json` in its own process, as a person runs it."""
    env = {**os.environ, "LEDGERBUS_NATS_URL": server.url, "LEDGERBUS_PREFIX": server.prefix}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ledgerbus.cli.main", "stalls", *args, "--json", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    found: list[dict[str, Any]] = json.loads(out)
    assert proc.returncode == (1 if found else 0), err.decode()  # exit 1 when it finds a stall, like verify
    return found


async def until_flagged(server: Any, task_id: str, *args: str, within: float) -> tuple[dict[str, Any], float]:
    """Run `ledgerbus stalls` until it lists `task_id`; (the entry, seconds it took)."""
    t0 = time.monotonic()
    while True:
        entry = next((s for s in await stalls(server, *args) if s["taskId"] == task_id), None)
        if entry is not None:
            return entry, time.monotonic() - t0
        assert time.monotonic() - t0 < within, f"{task_id} never listed by `ledgerbus stalls {' '.join(args)}`"


async def test_ledgerbus_stalls_flags_an_hour_ahead_and_not_an_hour_behind(bus, nats_server, ledger):
    reg = CapabilityRegistry()
    agents = [skewed_agent(bus, "ahead", +HOUR_MS, hang, reg), skewed_agent(bus, "behind", -HOUR_MS, hang, reg)]
    await start_all(agents)
    client = await Requester(bus, "tester", registry=reg).start()
    try:
        async with Recorder(bus, ledger) as rec:
            acked: dict[str, Envelope] = {}
            for name in ("ahead", "behind"):
                req = client.build(name, f"{name}.work", {"x": 1})
                watch = client.watch(req.task_id)
                await bus.publish(req)
                ack = await asyncio.wait_for(watch.get(), 10)
                assert ack.action is Action.ACK and abs(ack.timestamp - req.timestamp) > HOUR_MS - 60_000
                acked[name] = req
            await rec.catch_up()
            path = str(Path(ledger.path))
            for source in ((), ("--ledger", path)):
                # Just acknowledged, an hour "ago" by its own clock: not silent for the window yet.
                listed = {s["taskId"] for s in await stalls(nats_server, *source, "--stall-after", "30")}
                assert acked["behind"].task_id not in listed
                assert acked["ahead"].task_id not in listed
                # An hour "in the future" by its own clock: silent for a second, and flagged as such.
                entry, _ = await until_flagged(nats_server, acked["ahead"].task_id, *source, "--stall-after", "1",
                                               within=15)
                assert entry["code"] == "STALLED" and entry["agent"] == "ahead"
                assert 1_000 <= entry["silentMs"] < 60_000, entry
    finally:
        await client.stop()
        await stop_all(agents)
