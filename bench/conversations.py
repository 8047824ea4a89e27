"""Conversation throughput: the content pipeline (research ×3 in parallel → write → edit) end to end.

Trivial handlers in an agent process; the orchestrator in this one, rate limits off (they exist to
protect real agents, and would make this a measure of the limiter). A conversation is 17 envelopes
(root REQUEST + ACK, five steps × REQUEST/ACK/RESPONSE, root RESPONSE), all in the ledger.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.baselines import Figures, _collect
from bench.env import BenchEnv
from bench.harness import percentile
from bench.procs import spawn

ENVELOPES_PER_CONVERSATION = 17


def unlimited_policies() -> Any:
    """No rate limits, and generous receipt/stall windows.

    The orchestrator's backpressure keeps queued requests from counting as missing receipts under the
    defaults too (tests/integration/test_orchestrator_load.py); the wide windows keep a benchmark on a
    loaded machine from measuring the policy instead of the bus.
    """
    from ledgerbus.orchestrator.policy import PolicySet, RateLimitPolicy, TaskPolicy

    return PolicySet(rate=RateLimitPolicy(global_rate=None, agent_rate=None),
                     default=TaskPolicy(receipt_timeout=60.0, stall_after=60.0, timeout=120.0))


async def run_conversations(orch: Any, capability: str, payloads: list[dict[str, Any]], inflight: int) -> tuple[float, list[float], list[Any]]:
    """Run every payload as a conversation, `inflight` at a time: (elapsed s, latencies s, results)."""
    sem = asyncio.Semaphore(inflight)
    latencies: list[float] = []

    async def one(p: dict[str, Any]) -> Any:
        async with sem:
            t0 = time.perf_counter()
            res = await orch.run(capability, p)
            latencies.append(time.perf_counter() - t0)
            return res

    t0 = time.perf_counter()
    results = await asyncio.gather(*(one(p) for p in payloads))
    return time.perf_counter() - t0, latencies, list(results)


async def conversations(env: BenchEnv) -> Figures:
    from ledgerbus.examples import ARTICLE, ContentPipeline, register
    from ledgerbus.bus.connection import Bus
    from ledgerbus.orchestrator.engine import Orchestrator

    register()

    figs: Figures = {}
    prefix = env.prefix()
    bus = await Bus.connect(env.url, prefix=prefix, name="bench-conversations")
    worker = await spawn("agents", env.url, prefix, "3", "3", str(max(env.sizes.conv_inflight * 3, 16)), "--handlers", "pipeline")
    orch = await Orchestrator(bus, decomposer=ContentPipeline(), policies=unlimited_policies()).start()
    try:
        await run_conversations(orch, ARTICLE, [{"topic": "warm up"}] * 5, 5)
        for r in range(env.runs):
            n = env.sizes.conversations
            payloads = [{"topic": f"topic {r}-{i}", "subtopics": 3} for i in range(n)]
            elapsed, lat, results = await run_conversations(orch, ARTICLE, payloads, env.sizes.conv_inflight)
            done = sum(1 for res in results if res.ok)
            _collect(figs, "conv.rate", n / elapsed, "conv/s")
            _collect(figs, "conv.p50", percentile(lat, 50) * 1e3, "ms", False)
            _collect(figs, "conv.p99", percentile(lat, 99) * 1e3, "ms", False)
            _collect(figs, "conv.lost", float(n - done), "not DONE", False)
    finally:
        await orch.stop()
        await worker.stop()
        await bus.close()
    return figs
