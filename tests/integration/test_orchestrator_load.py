"""Issue 19, load: a busy agent is not a missing one.

The content pipeline (research ×3 → write → edit) with one instance per agent type at the runtime's
default concurrency and the orchestrator's default policies (2 s receipt window, rate limits on):
hundreds of requests queue behind each type's handler slots, and none of that may read as an agent
that is not there.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from orchestration_harness import start_all, stop_all

from ledgerbus.examples import AGENTS, ARTICLE, ContentPipeline, register
from ledgerbus.agents.runtime import AgentRuntime
from ledgerbus.eventstore.fold import ConversationStatus
from ledgerbus.orchestrator.breaker import BreakerState
from ledgerbus.orchestrator.engine import Orchestrator
from ledgerbus.schemas.codes import ErrorCode

register()  # the orchestrator validates step inputs against the examples' capabilities

CONVERSATIONS = 600
IN_FLIGHT = 100


async def run_all(orch: Orchestrator, payloads: list[dict[str, Any]], inflight: int) -> list[Any]:
    sem = asyncio.Semaphore(inflight)

    async def one(p: dict[str, Any]) -> Any:
        async with sem:
            return await orch.run(ARTICLE, p)

    return list(await asyncio.gather(*(one(p) for p in payloads)))


@pytest.mark.slow
async def test_600_conversations_100_in_flight_on_one_instance_per_type_all_done(bus):
    # AgentRuntime's own default concurrency (16), as `ledgerbus agent` runs the example agents.
    runtimes = [AgentRuntime(a, bus) for a in AGENTS]
    assert {r.concurrency for r in runtimes} == {16}
    orch = Orchestrator(bus, decomposer=ContentPipeline())  # default policies
    await start_all(runtimes)
    t0 = time.monotonic()
    try:
        async with orch:
            payloads = [{"topic": f"load topic {i}", "subtopics": 3} for i in range(CONVERSATIONS)]
            results = await asyncio.wait_for(run_all(orch, payloads, IN_FLIGHT), 120)
    finally:
        await stop_all(runtimes)
    elapsed = time.monotonic() - t0

    statuses = [r.status for r in results]
    not_done = [(r.conversation_id, r.outcome.reasons) for r in results if r.status is not ConversationStatus.DONE]
    assert not not_done, f"{len(not_done)} of {CONVERSATIONS} not DONE, e.g. {not_done[:2]}"
    assert statuses.count(ConversationStatus.DONE) == CONVERSATIONS
    opened = [(agent, new) for agent, _, new in orch.breaker_log if new is BreakerState.OPEN]
    assert not opened, f"breakers opened: {opened}"
    # Queued is not missing: no step was called unavailable, so none was retried.
    verdicts = [d.code for r in results for t in r.state.tasks.values() for d in t.decisions]
    assert ErrorCode.NO_RECEIPT.value not in verdicts
    assert all(t.attempts == 1 for r in results for t in r.state.subtasks)
    print(f"{CONVERSATIONS} conversations in {elapsed:.1f}s")
