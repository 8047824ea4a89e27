"""Step throughput and latency: REQUEST → ACK → RESPONSE through ledgerbus, every envelope in the ledger.

The agent runs in another process (like the baselines' responders) with a validated, typed echo
handler and durable results by idempotency key; the requester validates its payload before sending.
"""

from __future__ import annotations

from typing import Any

from bench.agents_trivial import ECHO_PAYLOAD, echo_agents, echo_capability, echo_registry, echo_type
from bench.baselines import Figures, request_reply
from bench.env import BenchEnv, timed_calls
from bench.procs import cpu_seconds, spawn


def _server_cpu(env: BenchEnv) -> float:
    return cpu_seconds(env.server_pid) if env.server_pid else 0.0


async def steps(env: BenchEnv) -> Figures:
    from ledgerbus.bus.connection import Bus
    from ledgerbus.bus.requester import Requester

    figs: Figures = {}
    prefix = env.prefix()
    echo_agents(1)  # registers the capability here too, so the requester validates what it sends
    bus = await Bus.connect(env.url, prefix=prefix, name="bench-steps")
    worker = await spawn("agents", env.url, prefix, "1", "1", str(max(env.sizes.inflight, 16)))
    req = await Requester(bus, "bench", registry=echo_registry()).start()
    try:
        async def call() -> Any:
            return await req.request(echo_type(0), echo_capability(0), ECHO_PAYLOAD, timeout=30)

        await timed_calls(50, 10, call)

        def cpu() -> dict[str, float]:
            out = {"cpu": cpu_seconds() + cpu_seconds(worker.pid)}
            if env.server_pid:
                out["server_cpu"] = _server_cpu(env)
            return out

        await request_reply(env, figs, "lb", call, "steps/s", cpu=cpu)
    finally:
        await req.stop()
        await worker.stop()
        await bus.close()
    return figs
