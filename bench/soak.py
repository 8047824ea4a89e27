"""Soak: a steady load for a few minutes with memory sampled; reports growth and any lost envelope.

    python -m bench.soak --minutes 3 --rate 50

One embedded nats-server (a temporary store), two agent instances, a recorder into SQLite and a driver
sending `--rate` requests per second, each waiting for its RESPONSE. Every few seconds the RSS of this
process and of nats-server is sampled (psutil, the `bench` extra). At the end every envelope whose publish
JetStream acknowledged must be in the SQLite mirror. Memory growth is the slope of a least-squares line
through the samples after a warm-up, in MiB per minute.

Not part of the test run: it prints a verdict and exits 1 on a lost envelope or growth above --max-growth.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import psutil

from ledgerbus.agents.runtime import AgentRuntime
from ledgerbus.agents.sdk import Agent
from ledgerbus.bus.connection import Bus
from ledgerbus.bus.server import EmbeddedServer, ServerConfig
from ledgerbus.eventstore.recorder import Recorder
from ledgerbus.eventstore.sqlite import SQLiteEventStore
from ledgerbus.schemas.capability import CapabilityRegistry
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import Envelope, new_request

MiB = 1024 * 1024


class Ping(msgspec.Struct):
    n: int
    text: str = ""


def pinger() -> Agent:
    agent = Agent("soak", registry=CapabilityRegistry())

    @agent.capability("soak.ping")
    async def ping(inp: Ping, ctx: Any) -> Ping:
        return Ping(inp.n + 1, inp.text[::-1])

    return agent


def slope_per_minute(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, bytes) samples, in MiB per minute (pure)."""
    if len(samples) < 3:
        return 0.0
    xs, ys = [s[0] for s in samples], [s[1] for s in samples]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var * 60 / MiB


async def soak(minutes: float, rate: float, warmup: float, every: float) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="ledgerbus-soak-"))
    server = await asyncio.to_thread(EmbeddedServer(ServerConfig(data_dir=tmp / "nats")).start)
    me, srv = psutil.Process(), psutil.Process(server.pid)
    # Acknowledged ids go to a file, not a set: the soak measures ledgerbus's memory, not its own bookkeeping.
    acked_file = open(tmp / "acked.txt", "w")
    acked_count = 0
    answered: dict[str, asyncio.Event] = {}
    driver = await Bus.connect(server.url, name="soak-driver")
    rec_bus = await Bus.connect(server.url, name="soak-recorder")
    store = SQLiteEventStore(tmp / "ledger.db")
    runtimes = [await AgentRuntime(pinger(), await Bus.connect(server.url, name=f"soak-{i}"), announce=False).start()
                for i in range(2)]
    recorder = await Recorder(rec_bus, store).start()

    async def on_answer(msg: Any) -> None:
        env = driver.codec.decode(msg.data)
        if env.action is Action.RESPONSE and env.task_id in answered:
            answered[env.task_id].set()

    await driver.subscribe_inbox("soak-driver", on_answer)
    samples: list[tuple[float, float, float]] = []  # (t, our RSS, server RSS)
    latencies: list[float] = []  # 8 bytes a request: negligible next to the growth threshold
    unanswered = 0
    start = time.monotonic()
    end = start + minutes * 60

    async def one(n: int) -> None:
        nonlocal unanswered
        req: Envelope = new_request(sender="soak-driver", recipient="soak", capability="soak.ping",
                                    payload={"n": n, "text": f"steady load {n}"})
        ev = answered.setdefault(req.task_id, asyncio.Event())
        t0 = time.monotonic()
        nonlocal acked_count
        await driver.publish(req)
        acked_file.write(req.id + "\n")
        acked_count += 1
        try:
            await asyncio.wait_for(ev.wait(), 10)
            latencies.append(time.monotonic() - t0)
        except asyncio.TimeoutError:
            unanswered += 1
        answered.pop(req.task_id, None)

    async def sampler() -> None:
        while time.monotonic() < end:
            samples.append((time.monotonic() - start, me.memory_info().rss, srv.memory_info().rss))
            await asyncio.sleep(every)

    sampling = asyncio.create_task(sampler())
    inflight: set[asyncio.Task[None]] = set()
    n = 0
    while time.monotonic() < end:
        n += 1
        t = asyncio.create_task(one(n))
        inflight.add(t)
        t.add_done_callback(inflight.discard)
        await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))  # pacing, not synchronisation
    await asyncio.gather(*inflight)
    await sampling
    last = (await driver.js.stream_info(driver.subjects.stream)).state.last_seq
    await recorder.wait_for(last, timeout=60)
    acked_file.close()
    stored = {row[0] for row in store.db.execute("select id from events")}
    lost = sum(1 for line in open(tmp / "acked.txt") if line.strip() not in stored)
    for rt in runtimes:
        await rt.stop(drain=False)
        await rt.bus.close()
    await recorder.stop()
    await driver.close()
    await rec_bus.close()
    store.close()
    await asyncio.to_thread(server.stop)
    steady = [(t, a, b) for t, a, b in samples if t >= warmup]
    return {
        "requests": n, "acknowledged": acked_count, "lost": lost, "unanswered": unanswered,
        "ledger_messages": last,
        "p50_ms": 1000 * (statistics.median(latencies) if latencies else 0.0),
        "p99_ms": 1000 * (sorted(latencies)[int(len(latencies) * 0.99) - 1] if latencies else 0.0),
        "client_rss_mib": (samples[0][1] / MiB, samples[-1][1] / MiB) if samples else (0, 0),
        "server_rss_mib": (samples[0][2] / MiB, samples[-1][2] / MiB) if samples else (0, 0),
        "client_growth_mib_per_min": slope_per_minute([(t, a) for t, a, _ in steady]),
        "server_growth_mib_per_min": slope_per_minute([(t, b) for t, _, b in steady]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=3.0)
    p.add_argument("--rate", type=float, default=50.0, help="requests per second")
    p.add_argument("--warmup", type=float, default=30.0, help="seconds of samples ignored for the growth slope")
    p.add_argument("--every", type=float, default=2.0, help="seconds between memory samples")
    p.add_argument("--max-growth", type=float, default=2.0, help="MiB/min of client RSS growth tolerated")
    args = p.parse_args()
    r = asyncio.run(soak(args.minutes, args.rate, min(args.warmup, args.minutes * 30), args.every))
    for k, v in r.items():
        print(f"{k:28} {v if not isinstance(v, float) else round(v, 2)}")
    ok = r["lost"] == 0 and r["unanswered"] == 0 and r["client_growth_mib_per_min"] <= args.max_growth
    print("verdict: " + ("OK — no lost envelope, no memory growth" if ok else "PROBLEM"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
