"""Step throughput and latency: REQUEST → ACK → RESPONSE through ledgerbus, every envelope in the ledger.

The agent runs in another process (like the baselines' responders) with a validated, typed echo
handler and durable results by idempotency key; the requester validates its payload before sending.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bench.agents_trivial import ECHO_PAYLOAD, echo_agents, echo_capability, echo_registry, echo_type
from bench.baselines import Figures, _collect, request_reply
from bench.env import BenchEnv, rate_and_latency, timed_calls
from bench.procs import cpu_seconds, spawn


def _server_cpu(env: BenchEnv) -> float:
    return cpu_seconds(env.server_pid) if env.server_pid else 0.0


async def steps(env: BenchEnv) -> Figures:
    """The steps, and the same steps in flight against an agent that keeps no idempotency record
    (`AgentRuntime(idempotent=False)`: three durable appends per step instead of four), interleaved."""
    from ledgerbus.bus.connection import Bus
    from ledgerbus.bus.requester import Requester

    figs: Figures = {}
    echo_agents(1)  # registers the capability here too, so the requester validates what it sends
    sides = []
    try:
        for extra in ((), ("--no-idempotent",)):
            prefix = env.prefix()
            bus = await Bus.connect(env.url, prefix=prefix, name="bench-steps")
            worker = await spawn("agents", env.url, prefix, "1", "1", str(max(env.sizes.inflight, 16)), *extra)
            req = await Requester(bus, "bench", registry=echo_registry()).start()
            sides.append((bus, worker, req))

            async def call(req: Any = req) -> Any:
                return await req.request(echo_type(0), echo_capability(0), ECHO_PAYLOAD, timeout=30)

            await timed_calls(50, 10, call)
        (_, worker, req), (_, _, plain) = sides

        async def call() -> Any:
            return await req.request(echo_type(0), echo_capability(0), ECHO_PAYLOAD, timeout=30)

        async def call_plain() -> Any:
            return await plain.request(echo_type(0), echo_capability(0), ECHO_PAYLOAD, timeout=30)

        def cpu() -> dict[str, float]:
            out = {"cpu": cpu_seconds() + cpu_seconds(worker.pid)}
            if env.server_pid:
                out["server_cpu"] = _server_cpu(env)
            return out

        once = dataclasses.replace(env, runs=1)
        for _ in range(env.runs):
            await request_reply(once, figs, "lb", call, "steps/s", cpu=cpu)
            elapsed, lat = await timed_calls(env.sizes.steps_conc, env.sizes.inflight, call_plain)
            _collect(figs, "lb3.conc.rate", rate_and_latency(env.sizes.steps_conc, elapsed, lat)[0], "steps/s")
    finally:
        for bus, worker, req in sides:
            await req.stop()
            await worker.stop()
            await bus.close()
    return figs
