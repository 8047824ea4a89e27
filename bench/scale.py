"""Scale: many agent instances across many types, many conversations at once, on one machine.

Instances live in one agent-host process, each on its own NATS connection with its own runtime (so
an "instance" costs what a separately deployed replica would cost in connections and consumers).
Conversations are single-step (SingleStepDecomposer) across the types, all started at once.
"""

from __future__ import annotations

from bench.agents_trivial import ECHO_PAYLOAD, echo_agents, echo_capability, echo_registry
from bench.baselines import Figures, _collect
from bench.conversations import run_conversations, unlimited_policies
from bench.env import BenchEnv
from bench.harness import percentile
from bench.procs import cpu_seconds, rss_bytes, spawn


async def scale(env: BenchEnv) -> Figures:
    from ledgerbus.bus.connection import Bus
    from ledgerbus.orchestrator.engine import Orchestrator
    from ledgerbus.orchestrator.plan import SingleStepDecomposer

    figs: Figures = {}
    types = env.sizes.scale_types
    echo_agents(types)
    instance_counts = env.sizes.scale_instances
    conv_counts = env.sizes.scale_conversations
    for n_inst in instance_counts:
        prefix = env.prefix()
        bus = await Bus.connect(env.url, prefix=prefix, name="bench-scale")
        worker = await spawn("agents", env.url, prefix, str(types), str(n_inst), "16", timeout=180)
        orch = await Orchestrator(bus, decomposer=SingleStepDecomposer(), policies=unlimited_policies(),
                                  registry=echo_registry()).start()
        try:
            idle = (rss_bytes(worker.pid) - worker.ready["rss_base"]) / n_inst / 2**20
            _collect(figs, f"scale.mem.i{n_inst}", idle, "MB/instance", False)
            # Only the largest instance count runs every conversation size; the others run the largest size.
            sizes = conv_counts if n_inst == instance_counts[-1] else conv_counts[-1:]
            await run_conversations(orch, echo_capability(0), [ECHO_PAYLOAD] * 10, 10)
            for n_conv in sizes:
                for r in range(env.runs):
                    caps = [echo_capability(i % types) for i in range(n_conv)]
                    cpu0 = cpu_seconds() + cpu_seconds(worker.pid)
                    elapsed, _, results = await _run_mixed(orch, caps)
                    cpu = cpu_seconds() + cpu_seconds(worker.pid) - cpu0
                    steps = [t for res in results for t in res.state.subtasks
                             if t.finished_at is not None and t.sent_at is not None]
                    lost = n_conv - sum(1 for res in results if res.ok)
                    key = f"i{n_inst}.c{n_conv}"
                    _collect(figs, f"scale.time.{key}", elapsed, "s", False)
                    _collect(figs, f"scale.p99.{key}", percentile([t.finished_at - t.sent_at for t in steps], 99), "ms", False)
                    _collect(figs, f"scale.cpu.{key}", cpu / max(len(steps), 1) * 1e6, "µs CPU/step", False)
                    _collect(figs, f"scale.lost.{key}", float(lost), "not DONE", False)
            busy = (rss_bytes(worker.pid) - worker.ready["rss_base"]) / n_inst / 2**20
            _collect(figs, f"scale.membusy.i{n_inst}", busy, "MB/instance", False)
        finally:
            await orch.stop()
            await worker.stop()
            await bus.close()
    return figs


async def _run_mixed(orch: object, caps: list[str]) -> tuple[float, list[float], list[object]]:
    """All conversations at once, each to its own capability (spread over the types)."""
    import asyncio
    import time

    t0 = time.perf_counter()
    results = await asyncio.gather(*(orch.run(c, ECHO_PAYLOAD) for c in caps))  # type: ignore[attr-defined]
    return time.perf_counter() - t0, [], list(results)
