"""Issue 4: kill -9 the orchestrator mid-conversation; a new one finishes it, each handler ran once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from chain_orchestrator import make
from orchestration_harness import counting_agent, runtime, start_all, stop_all, wait_until

from ledgerbus.eventstore.fold import ConversationStatus, TaskStatus, fold
from ledgerbus.eventstore.recorder import Recorder
from ledgerbus.ids import uuid7
from ledgerbus.orchestrator.policy import RateLimitPolicy
from ledgerbus.schemas.capability import CapabilityRegistry
from ledgerbus.schemas.codes import Action

HERE = Path(__file__).parent


async def test_killed_orchestrator_is_replaced_and_every_handler_runs_once(bus, nats_server, ledger):
    reg, calls = CapabilityRegistry(), Counter()
    entered_b, release_b = asyncio.Event(), asyncio.Event()

    async def hold_b(payload, ctx):
        entered_b.set()
        await release_b.wait()

    stepa = runtime(counting_agent("stepa", lambda p, c: None, reg, calls), bus)
    stepb = runtime(counting_agent("stepb", hold_b, reg, calls), bus)
    conv = uuid7()
    async with Recorder(bus, ledger) as rec:
        await start_all([stepa, stepb])
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "chain_orchestrator.py"), nats_server.url, nats_server.prefix, conv],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            await asyncio.wait_for(entered_b.wait(), 20)  # a1, a2 done; b is running in its handler
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        assert proc.returncode == -signal.SIGKILL

        # A new orchestrator, with a tight rate limit on stepa: re-issued work must queue behind it.
        orch = make(bus, rate=RateLimitPolicy(global_rate=None, agent_rate=None, per_agent={"stepa": (4.0, 1.0)}))
        async with orch:
            recovering = asyncio.create_task(orch.recover())
            await wait_until(lambda: conv in orch.runs, 10, "the new orchestrator to pick the conversation up")
            release_b.set()  # b finishes while the new orchestrator watches it: it must not be sent again
            results = await asyncio.wait_for(recovering, 20)
        await rec.catch_up()
        await stop_all([stepa, stepb])

    assert [r.conversation_id for r in results] == [conv]
    assert results[0].status is ConversationStatus.DONE
    # Exactly once per task, across the crash.
    assert sorted(calls) == sorted(f"{conv}_{s}" for s in ("a1", "a2", "b", "c1", "c2", "c3"))
    assert set(calls.values()) == {1}
    events = ledger.envelopes(conv)
    state = fold(events)
    assert state.status is ConversationStatus.DONE
    assert all(t.status is TaskStatus.DONE for t in state.tasks.values())
    b_requests = [e for e in events if e.action is Action.REQUEST and e.task_id.endswith("_b")]
    b_story = [(e.action.value, e.attempt, e.sender, e.error.code if e.error else None)
               for e in events if e.task_id.endswith("_b")]
    assert len(b_requests) == 1, b_story  # watched, not re-sent
    c_requests = sorted((e for e in events if e.action is Action.REQUEST and e.task_id[-3:-1] == "_c"),
                        key=lambda e: e.timestamp)
    assert len(c_requests) == 3
    gaps = [b.timestamp - a.timestamp for a, b in zip(c_requests, c_requests[1:])]
    assert all(g >= 200 for g in gaps), gaps  # 4/s with a burst of 1: ~250 ms apart
