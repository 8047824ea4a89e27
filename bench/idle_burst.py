"""Idle, then a burst: how long an agent that has waited N seconds takes its next requests.

    .venv/bin/python -m bench.idle_burst                      # idle 0, 2, 4, 6 s; 8 requests a burst
    .venv/bin/python -m bench.idle_burst --idle 0,3,5 --burst 12 --rounds 3

An embedded server, one echo agent in another process (`bench.workers agents`, concurrency 16, as
the step benchmarks start it) and a Requester here. Each round waits the idle length, then sends the
burst one request after another, printing every latency and, per idle length, p50 and max. A pull
that takes its request a fetch timeout late shows as a request near 1 s after an idle wait.
Prints figures only; never part of the test run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from bench.agents_trivial import echo_agents, echo_call, echo_registry
from bench.harness import percentile
from bench.procs import spawn


async def run(url: str, idles: list[float], burst: int, rounds: int, concurrency: int) -> dict[float, list[float]]:
    from ledgerbus.bus.connection import Bus
    from ledgerbus.bus.requester import Requester

    echo_agents(1)  # registers the capability here too, so the requester validates what it sends
    bus = await Bus.connect(url, name="bench-idle-burst")
    worker = await spawn("agents", url, bus.subjects.prefix, "1", "1", str(concurrency))
    req = await Requester(bus, "bench", registry=echo_registry()).start()
    call = echo_call(req)
    seen: dict[float, list[float]] = {idle: [] for idle in idles}
    try:
        for _ in range(5):  # warm up: consumer created, first appends made
            await call()
        for r in range(rounds):
            for idle in idles:
                await asyncio.sleep(idle)  # the idle period is what is measured, not a synchronisation
                lat = []
                for _ in range(burst):
                    t0 = time.perf_counter()
                    await call()
                    lat.append((time.perf_counter() - t0) * 1000)
                seen[idle] += lat
                print(f"round {r + 1} idle {idle:g} s: " + " ".join(f"{x:.1f}" for x in lat) + " ms", flush=True)
    finally:
        await req.stop()
        await worker.stop()
        await bus.close()
    return seen


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.idle_burst", description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--idle", default="0,2,4,6", help="idle lengths in seconds, comma-separated")
    p.add_argument("--burst", type=int, default=8, help="sequential requests after each idle period")
    p.add_argument("--rounds", type=int, default=2, help="times through every idle length")
    p.add_argument("--concurrency", type=int, default=16, help="the agent's concurrency (its fetch batch)")
    p.add_argument("--url", default=None, help="use this NATS server instead of starting one")
    args = p.parse_args(argv)
    try:
        idles = [float(x) for x in args.idle.split(",") if x]
    except ValueError:
        print(f"--idle: not a list of seconds: {args.idle!r}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="ledgerbus-idle-") as d:
        server = None
        url = args.url
        if url is None:
            from ledgerbus.bus.server import EmbeddedServer, ServerConfig

            server = EmbeddedServer(ServerConfig(data_dir=Path(d))).start()
            url = server.url
        try:
            seen = asyncio.run(run(url, idles, args.burst, args.rounds, args.concurrency))
        finally:
            if server is not None:
                server.stop()
    print("idle s   requests   p50 ms   max ms   >500 ms")
    for idle, lat in seen.items():
        slow = sum(1 for x in lat if x > 500)
        print(f"{idle:6g}   {len(lat):8d}   {percentile(lat, 50):6.1f}   {max(lat):6.1f}   {slow:7d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
