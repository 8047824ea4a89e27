"""Shared by the test_ledger_* tests: record real conversations (example agents + orchestrator) into SQLite."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from ledgerbus.agents.runtime import AgentRuntime
from ledgerbus.bus.connection import Bus
from ledgerbus.eventstore.recorder import Recorder
from ledgerbus.eventstore.sqlite import SQLiteEventStore
from ledgerbus.orchestrator.engine import Orchestrator
from ledgerbus.orchestrator.inflight import ConversationResult


async def record_articles(bus: Bus, store: SQLiteEventStore, topics: Sequence[str], *,
                          subtopics: int = 2) -> list[ConversationResult]:
    """Run one content.article conversation per topic through the real agents; all of it lands in `store`."""
    from ledgerbus.examples import AGENTS, ARTICLE, ContentPipeline, register

    register()

    runtimes = [AgentRuntime(a, bus) for a in AGENTS]
    results: list[ConversationResult] = []
    async with Recorder(bus, store) as rec:
        await asyncio.gather(*(r.start() for r in runtimes))
        try:
            async with Orchestrator(bus, decomposer=ContentPipeline(), use_directory=False) as orch:
                results = list(await asyncio.gather(
                    *(orch.run(ARTICLE, {"topic": t, "subtopics": subtopics}) for t in topics)))
        finally:
            await asyncio.gather(*(r.stop() for r in runtimes))
        await rec.catch_up()
    return results
