"""Step throughput and latency: REQUEST → ACK → RESPONSE through ledgerbus, every envelope in the ledger.

The agent runs in another process (like the baselines' responders) with a validated, typed echo
handler and durable results by idempotency key; the requester validates its payload before sending.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from bench.agents_trivial import echo_agents, echo_call, echo_registry
from bench.baselines import Figures, _collect, request_reply
from bench.env import BenchEnv, rate_and_latency, timed_calls
from bench.procs import Worker, cpu_seconds, spawn


def _server_cpu(env: BenchEnv) -> float:
    return cpu_seconds(env.server_pid) if env.server_pid else 0.0


async def echo_side(env: BenchEnv, name: str, *worker_args: str) -> tuple[Any, Worker, Any]:
    """A connection, an echo agent process (`bench.workers agents` with `worker_args`) and a Requester."""
    from ledgerbus.bus.connection import Bus
    from ledgerbus.bus.requester import Requester

    bus = await Bus.connect(env.url, prefix=env.prefix(), name=name)
    worker = await spawn("agents", env.url, bus.subjects.prefix, "1", "1", str(max(env.sizes.inflight, 16)), *worker_args)
    req = await Requester(bus, "bench", registry=echo_registry()).start()
    return bus, worker, req


async def close_sides(sides: Iterable[tuple[Any, Worker, Any]]) -> None:
    for bus, worker, req in sides:
        await req.stop()
        await worker.stop()
        await bus.close()


async def steps(env: BenchEnv) -> Figures:
    """The steps, and the same steps in flight against an agent that keeps no idempotency record
    (`AgentRuntime(idempotent=False)`: three durable appends per step instead of four), interleaved."""
    figs: Figures = {}
    echo_agents(1)  # registers the capability here too, so the requester validates what it sends
    sides = []
    try:
        for extra in ((), ("--no-idempotent",)):
            sides.append(await echo_side(env, "bench-steps", *extra))
            await timed_calls(50, 10, echo_call(sides[-1][2]))
        (_, worker, req), (_, _, plain) = sides
        call, call_plain = echo_call(req), echo_call(plain)

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
        await close_sides(sides)
    return figs
