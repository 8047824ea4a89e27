"""One trial of one system, in a process of its own: `python -m bench.peers.trial NAME WORKDIR ...`.

The system starts from nothing (its servers are children of this process), is warmed up, then runs
the phases below; every figure goes to stdout as one JSON line, `{"event": "result", ...}` last.

  warm-up         --warm N: a quarter of N one after another, then N ten at a time (not measured)
  sequential      --seq N (at most --seq-seconds): one conversation after another, each one's latency
  in flight       --flight K:N (at most --flight-seconds): N conversations, K at a time; the rate, and
                  the CPU time of this process and all its descendants (servers, workers) per conversation
  fsyncs          --fsync M: prints {"event": "trace", "pids": [...]}, waits for a line on stdin (the
                  parent attaches `strace -f -c` to those pids), runs M sequential conversations, prints
                  {"event": "traced"} and waits for another line (the parent has read strace's count)

Every conversation's result is compared with the pipeline run inline (bench/peers/workload.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import percentile
from bench.peers import Json, driver
from bench.peers.workload import run_inline, topic


def tree_pids(root: int | None = None) -> list[int]:
    """`root` (this process) and every descendant."""
    root = root or os.getpid()
    try:
        import psutil

        p = psutil.Process(root)
        return [root, *(c.pid for c in p.children(recursive=True))]
    except ImportError:
        pass
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    todo += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


def tree_cpu() -> float:
    """CPU seconds (user + system) of this process and every live descendant."""
    from bench.procs import cpu_seconds

    total = 0.0
    for pid in tree_pids():
        try:
            total += cpu_seconds(pid)
        except (OSError, ValueError, LookupError):
            pass  # a process that ended between the listing and the read
        except Exception as exc:  # psutil.NoSuchProcess and friends, without importing psutil here
            if type(exc).__name__ not in ("NoSuchProcess", "ZombieProcess", "AccessDenied"):
                raise
    return total


class Checker:
    def __init__(self) -> None:
        self.done = 0
        self.wrong = 0
        self.first_wrong: str = ""

    def check(self, t: str, result: Json | BaseException) -> None:
        self.done += 1
        if isinstance(result, BaseException) or result != run_inline(t):
            self.wrong += 1
            if not self.first_wrong:
                self.first_wrong = f"{t}: {result!r}"[:300]


async def sequential(d: Any, chk: Checker, tag: str, n: int, seconds: float) -> list[float]:
    lat: list[float] = []
    deadline = time.perf_counter() + seconds
    for i in range(n):
        if time.perf_counter() > deadline:
            break
        t = topic(0, i) + tag
        t0 = time.perf_counter()
        try:
            res: Json | BaseException = await d.run(t)
        except Exception as exc:
            res = exc
        lat.append(time.perf_counter() - t0)
        chk.check(t, res)
    return lat


async def in_flight(d: Any, chk: Checker, tag: str, k: int, n: int, seconds: float) -> tuple[int, float, float]:
    """(conversations, elapsed s, CPU s of the whole process tree) with `k` lanes until n or the deadline."""
    started = 0
    deadline = time.perf_counter() + seconds

    async def lane() -> None:
        nonlocal started
        while started < n and time.perf_counter() < deadline:
            t = topic(k, started) + tag
            started += 1
            try:
                res: Json | BaseException = await d.run(t)
            except Exception as exc:
                res = exc
            chk.check(t, res)

    cpu0, t0 = tree_cpu(), time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(k)))
    return started, time.perf_counter() - t0, tree_cpu() - cpu0


def emit(**kw: Any) -> None:
    print(json.dumps(kw), flush=True)


async def trial(args: argparse.Namespace) -> None:
    d = driver(args.name)
    chk = Checker()
    t0 = time.perf_counter()
    await d.start(Path(args.workdir))
    try:
        emit(event="started", seconds=time.perf_counter() - t0)
        await sequential(d, chk, " warm", max(1, args.warm // 4), 30)
        if args.warm > 1:
            await in_flight(d, chk, " warm", 10, args.warm, 30)
        lat = await sequential(d, chk, " s", args.seq, args.seq_seconds)
        emit(event="seq", n=len(lat), p50=percentile(lat, 50) * 1e3, p99=percentile(lat, 99) * 1e3)
        for spec in args.flight:
            k, n = (int(x) for x in spec.split(":"))
            done, elapsed, cpu = await in_flight(d, chk, f" f{k}", k, n, args.flight_seconds)
            emit(event="flight", k=k, n=done, rate=done / elapsed, cpu_ms=cpu / done * 1e3)
        if args.fsync:
            emit(event="trace", pids=tree_pids())
            await asyncio.to_thread(sys.stdin.readline)
            await sequential(d, chk, " t", args.fsync, 120)
            emit(event="traced", n=args.fsync)
            await asyncio.to_thread(sys.stdin.readline)
    finally:
        await d.stop()
    emit(event="result", done=chk.done, wrong=chk.wrong, first_wrong=chk.first_wrong)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="bench.peers.trial")
    p.add_argument("name")
    p.add_argument("workdir")
    p.add_argument("--warm", type=int, default=20, help="warm-up conversations (a quarter sequential, the rest 10 at a time)")
    p.add_argument("--seq", type=int, default=100)
    p.add_argument("--seq-seconds", type=float, default=20)
    p.add_argument("--flight", action="append", default=[], help="K:N, N conversations K at a time")
    p.add_argument("--flight-seconds", type=float, default=10)
    p.add_argument("--fsync", type=int, default=0)
    asyncio.run(trial(p.parse_args(argv)))


if __name__ == "__main__":
    main()
