"""What every benchmark gets: the server URL, how many repeats, and the sizes of this run."""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bench.harness import percentile


@dataclass(frozen=True)
class Sizes:
    steps_seq: int = 1000  # sequential steps / round trips per repeat
    steps_conc: int = 5000  # steps per repeat with `inflight` outstanding
    inflight: int = 100
    js_seq: int = 1000
    js_async: int = 10000
    conversations: int = 600
    conv_inflight: int = 200
    ledger_events: int = 200_000  # appended and replayed per repeat
    replay_memory_events: int = 1_000_000  # the peak-memory replay (once, not per repeat)
    scale_instances: tuple[int, ...] = (10, 100)
    scale_types: int = 10
    scale_conversations: tuple[int, ...] = (100, 1000)
    tracing_steps: int = 6000  # CPU times tick at 10 ms: 6,000 steps resolve under 2 µs per step
    ui_events: int = 1_000_000  # the ledger `ledgerbus ui` is timed on (bench/ui_million.py)
    # The peers section (bench/peers): per system and trial, sequential conversations, then (K in flight,
    # N conversations) phases, each phase also stopped after `peers_seconds`; then conversations under strace.
    peers_warm: int = 20
    peers_seq: int = 200
    peers_flight: tuple[tuple[int, int], ...] = ((50, 1000), (200, 2000))
    peers_seconds: float = 12.0
    peers_fsync: int = 20
    peers_trial_timeout: float = 300.0

    @classmethod
    def quick(cls) -> "Sizes":
        return cls(steps_seq=20, steps_conc=200, inflight=20, js_seq=50, js_async=500, conversations=20,
                   conv_inflight=10, ledger_events=2000, replay_memory_events=5000, scale_instances=(2, 4),
                   scale_types=2, scale_conversations=(10, 20), tracing_steps=50, ui_events=5000,
                   peers_warm=1, peers_seq=4, peers_flight=((50, 10),), peers_seconds=3.0, peers_fsync=1,
                   peers_trial_timeout=60.0)


@dataclass
class BenchEnv:
    url: str
    runs: int
    sizes: Sizes
    log: Callable[[str], None] = print
    server_pid: int | None = None  # the nats-server this run started (its CPU is part of a step's cost)
    _prefixes: "itertools.count[int]" = field(default_factory=itertools.count)

    def prefix(self) -> str:
        """A fresh subject namespace (and so a fresh LEDGER stream) for one benchmark."""
        return f"b{next(self._prefixes)}x{int(time.time()) % 100000}"


async def timed_calls(n: int, inflight: int, call: Callable[[], Awaitable[object]]) -> tuple[float, list[float]]:
    """Run `call` n times with at most `inflight` outstanding; (elapsed seconds, each call's latency)."""
    import asyncio

    latencies: list[float] = []
    left = n

    async def lane() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            t0 = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(min(inflight, n))))
    return time.perf_counter() - t0, latencies


def rate_and_latency(n: int, elapsed: float, latencies: list[float]) -> tuple[float, float, float]:
    """(operations per second, p50 µs, p99 µs)."""
    return n / elapsed, percentile(latencies, 50) * 1e6, percentile(latencies, 99) * 1e6
