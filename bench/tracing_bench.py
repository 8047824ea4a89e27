"""Tracing overhead per step: the same step benchmark with tracing off and on (every span sampled).

Spans go to a discarding exporter behind the usual BatchSpanProcessor, so this measures what
instrumentation costs a process, not a collector's network. Added cost is reported per process
(the requester's and the agent's) as CPU µs per step, and as the change in sequential p50.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

from bench.agents_trivial import echo_agents, echo_call
from bench.baselines import Figures, _collect
from bench.env import BenchEnv, rate_and_latency, timed_calls
from bench.procs import cpu_seconds
from bench.steps import close_sides, echo_side

try:
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
except ImportError:  # pragma: no cover - opentelemetry-sdk is a dependency
    SpanExporter = object  # type: ignore[assignment,misc]


class DiscardExporter(SpanExporter):  # type: ignore[misc,valid-type]
    """Accepts every span and keeps none."""

    def export(self, spans: Sequence[Any]) -> Any:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def turn_on() -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    from ledgerbus.tracing import setup

    setup.configure(DiscardExporter(), sampler=ALWAYS_ON)


async def tracing(env: BenchEnv) -> Figures:
    if importlib.util.find_spec("ledgerbus.tracing") is None:
        env.log("  ledgerbus.tracing is not present: tracing overhead not measured")
        return {}
    from ledgerbus.tracing import setup

    figs: Figures = {}
    echo_agents(1)
    setup.shutdown()
    for _ in range(env.runs):
        _collect(figs, "trace.off.path_ns", off_path_ns(), "ns/step", False)
    await _measure(env, figs)
    setup.shutdown()
    return figs


def off_path_ns(steps: int = 100_000) -> float:
    """What tracing off costs a step in code: the send span of each of its three publishes and the
    agent's process span, with tracing off (the checks the hot path really makes)."""
    import time

    from ledgerbus.schemas.envelope import new_request
    from ledgerbus.tracing import instrument

    req = new_request(sender="bench", recipient="echo0", capability="echo0.say", payload={})
    t0 = time.perf_counter()
    for _ in range(steps):
        for _ in range(3):
            with instrument.send_span("lb", req):
                pass
        with instrument.process_span("lb", req, None, agent="echo0"):
            pass
    return (time.perf_counter() - t0) / steps * 1e9


async def _measure(env: BenchEnv, figs: Figures) -> None:
    """An agent process with tracing off and one with it on, measured in alternating repeats (the
    machine drifts; alternating keeps the two sides' conditions alike). This process traces its own
    requests only during the "on" half of each repeat."""
    from ledgerbus.tracing import setup

    sides: dict[str, tuple[Any, Any, Any]] = {}
    try:
        for mode in ("off", "on"):
            sides[mode] = await echo_side(env, f"bench-tracing-{mode}", *(["--tracing"] if mode == "on" else []))
        for _ in range(env.runs):
            for mode, (_, worker, req) in sides.items():
                if mode == "on":
                    turn_on()
                else:
                    setup.shutdown()
                call = echo_call(req)
                await timed_calls(50, 10, call)
                n = env.sizes.tracing_steps
                elapsed, lat = await timed_calls(min(n, 1000), 1, call)
                _, p50, _ = rate_and_latency(min(n, 1000), elapsed, lat)
                _collect(figs, f"trace.{mode}.p50", p50, "µs", False)
                mine, theirs = cpu_seconds(), cpu_seconds(worker.pid)
                await timed_calls(n, env.sizes.inflight, call)
                _collect(figs, f"trace.{mode}.cpu_requester", (cpu_seconds() - mine) / n * 1e6, "µs CPU/step", False)
                _collect(figs, f"trace.{mode}.cpu_agent", (cpu_seconds(worker.pid) - theirs) / n * 1e6, "µs CPU/step", False)
    finally:
        setup.shutdown()
        await close_sides(sides.values())
