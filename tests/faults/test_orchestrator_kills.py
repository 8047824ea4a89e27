"""kill -9 the orchestrator (a subprocess) at random moments of a fan-out/fan-in conversation, again and
again; each replacement recovers from the ledger. The conversation finishes and every handler ran once."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import pytest

from ledgerbus.agents.runtime import AgentRuntime
from ledgerbus.agents.sdk import Agent
from ledgerbus.eventstore.fold import ConversationStatus, TaskStatus, fold
from ledgerbus.eventstore.recorder import Recorder
from ledgerbus.ids import uuid7
from ledgerbus.schemas.capability import CapabilityRegistry

from faulthelp import kill9, spawn
from orchestrator_runner import STEPS

MID_KILLS = 3  # kills that land after some tasks finished and before the conversation did


def worker(name: str, calls: Counter[str], rng: random.Random) -> Agent:
    agent = Agent(name, registry=CapabilityRegistry())

    @agent.capability(f"{name}.work", input=dict, output=dict)
    async def work(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
        calls[ctx.task_id] += 1
        await asyncio.sleep(rng.uniform(0.2, 0.4))  # work takes a while, so kills land mid-task too
        return {"n": payload.get("n"), "by": name}

    return agent


@pytest.mark.slow
async def test_orchestrator_killed_at_random_points_finishes_with_each_handler_once(nats_server, bus, ledger, tmp_path):
    rng = random.Random(4)
    calls: Counter[str] = Counter()
    runtimes = [await AgentRuntime(worker(n, calls, random.Random(n)), bus, announce=False).start() for n in ("worka", "workb")]
    conv = uuid7()
    args = (nats_server.url, nats_server.prefix, conv)
    kills, progress = 0, []
    try:
        async with Recorder(bus, ledger) as rec:
            def done_tasks() -> int:
                evs = ledger.envelopes(conv)
                return sum(t.status is TaskStatus.DONE for t in fold(evs).tasks.values()) if evs else 0

            mode = "run"
            for _ in range(30):
                proc = await spawn("orchestrator_runner.py", *args, mode, log=tmp_path / "orchestrator.log")
                mid_kills = sum(1 for a, b in zip([0, *progress], progress) if b > a and b < len(STEPS) + 1)
                if mid_kills < MID_KILLS and kills < 12:
                    # A random moment after the process is up: fault injection timing, not synchronisation.
                    # Later if the last process died before doing anything (a slow machine).
                    stalled = len(progress) - len([p for p in progress if p]) if progress else 0
                    await asyncio.sleep(rng.uniform(0.9, 1.5) + 0.4 * stalled)
                    if proc.returncode is None:
                        await kill9(proc)
                        kills += 1
                else:
                    await asyncio.wait_for(proc.wait(), 30)
                await rec.catch_up()
                progress.append(done_tasks())
                evs = ledger.envelopes(conv)
                if evs and fold(evs).status is not ConversationStatus.RUNNING:
                    break
                mode = "recover" if evs else "run"
            await rec.catch_up()
            final = fold(ledger.envelopes(conv))
    finally:
        for rt in runtimes:
            await rt.stop(drain=False)
    # The kills landed mid-conversation: tasks finished between kills, and some were left unfinished each time.
    mid = [n for n in progress[:kills] if 0 < n < len(STEPS)]
    assert len(mid) >= MID_KILLS, progress
    assert final is not None and final.status is ConversationStatus.DONE, final and final.status
    assert all(t.status is TaskStatus.DONE for t in final.tasks.values())
    ran = {k for k in calls}
    assert len(ran) == len(STEPS), sorted(ran)
    assert set(calls.values()) == {1}, calls  # exactly once per task across every crash
