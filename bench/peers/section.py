"""`python -m bench --only peers`: one trial of every system per round, in a fresh process each.

The runner calls `peers` once per round (its repeats are interleaved), and each call runs every
installed system once, starting from a different one each round, so that a system and the one it is
compared with see the same load. Where `strace` is installed, each trial ends with a few sequential
conversations under `strace -f -c -e trace=fsync,fdatasync` attached to every process of the system:
the fsyncs per conversation that say what each system's durability costs. Without strace that figure
is left out (and said so); nothing else depends on it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.baselines import Figures, _collect
from bench.env import BenchEnv
from bench.harness import BenchError, Measure
from bench.peers import SYSTEMS, info

ROOT = Path(__file__).resolve().parent.parent.parent
_rounds = itertools.count()


def strace_calls(summary: str) -> int:
    """The calls counted in `strace -c` output (its `total` line); 0 when it counted none."""
    for line in summary.splitlines():
        fields = line.split()
        if fields and fields[-1] == "total" and len(fields) >= 4:
            return int(fields[3])
    return 0


async def _strace(pids: list[int], out: Path) -> asyncio.subprocess.Process:
    """strace attached to `pids` (and whatever they start), once it says it is attached to each."""
    strace = shutil.which("strace")
    assert strace is not None
    args = [strace, "-f", "-c", "-e", "trace=fsync,fdatasync", "-o", str(out)]
    for pid in pids:
        args += ["-p", str(pid)]
    proc = await asyncio.create_subprocess_exec(*args, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    attached: set[str] = set()
    try:
        async with asyncio.timeout(20):
            while len(attached) < len(pids):
                line = (await proc.stderr.readline()).decode()
                if not line:
                    raise BenchError("strace ended before it attached")
                if "attached" in line:  # "strace: Process N attached" / "... attached with M threads"
                    attached.add(line.split()[2])
    except TimeoutError:
        proc.kill()
        raise BenchError(f"strace attached to {len(attached)} of {len(pids)} processes in 20 s") from None
    # The rest of its stderr (threads it follows) must not block it on a full pipe.
    asyncio.get_running_loop().create_task(proc.stderr.read())
    return proc


def trial_args(env: BenchEnv, name: str, workdir: str, fsync: bool) -> list[str]:
    s = env.sizes
    args = [sys.executable, "-m", "bench.peers.trial", name, workdir, "--warm", str(s.peers_warm), "--seq", str(s.peers_seq),
            "--seq-seconds", str(s.peers_seconds), "--flight-seconds", str(s.peers_seconds)]
    for k, n in s.peers_flight:
        args += ["--flight", f"{k}:{n}"]
    if fsync:
        args += ["--fsync", str(s.peers_fsync)]
    return args


async def trial(env: BenchEnv, name: str) -> dict[str, Any]:
    """Run one trial of `name` in a fresh process and working directory; its figures by event."""
    fsync = shutil.which("strace") is not None and env.sizes.peers_fsync > 0
    pyenv = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory(prefix=f"ledgerbus-peer-{name}-") as d:
        log = open(Path(d) / "trial.log", "wb")
        proc = await asyncio.create_subprocess_exec(
            *trial_args(env, name, d, fsync), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=log, cwd=str(ROOT), env=pyenv)
        assert proc.stdout is not None and proc.stdin is not None
        events: dict[str, Any] = {"flight": []}
        tracer: asyncio.subprocess.Process | None = None
        try:
            async with asyncio.timeout(env.sizes.peers_trial_timeout):
                async for raw in proc.stdout:
                    if not raw.startswith(b"{"):
                        continue  # a library printing to stdout
                    ev = json.loads(raw)
                    kind = ev.pop("event")
                    if kind == "flight":
                        events["flight"].append(ev)
                    elif kind == "trace":
                        try:
                            tracer = await _strace(ev["pids"], Path(d) / "strace.txt")
                        except BenchError as exc:
                            events["fsync_error"] = str(exc)
                        proc.stdin.write(b"go\n")
                        await proc.stdin.drain()
                    elif kind == "traced":
                        if tracer is not None:
                            tracer.send_signal(signal.SIGINT)
                            await tracer.wait()
                            summary = (Path(d) / "strace.txt").read_text()
                            events["fsync"] = strace_calls(summary) / ev["n"]
                            tracer = None
                        proc.stdin.write(b"done\n")
                        await proc.stdin.drain()
                    else:
                        events[kind] = ev
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise BenchError(f"{name}: the trial took longer than {env.sizes.peers_trial_timeout:g} s") from None
        finally:
            if tracer is not None and tracer.returncode is None:
                tracer.kill()
                await tracer.wait()
            log.close()
        if "result" not in events:
            err = (Path(d) / "trial.log").read_text(errors="replace")[-1500:]
            raise BenchError(f"{name}: the trial exited {proc.returncode} before its result:\n{err}")
        return events


def figures_of(name: str, ev: dict[str, Any]) -> Figures:
    figs: Figures = {}
    key = f"peer.{name}"
    _collect(figs, f"{key}.seq.p50", ev["seq"]["p50"], "ms", False)
    _collect(figs, f"{key}.seq.p99", ev["seq"]["p99"], "ms", False)
    for fl in ev["flight"]:
        _collect(figs, f"{key}.rate{fl['k']}", fl["rate"], "conv/s")
        _collect(figs, f"{key}.cpu{fl['k']}", fl["cpu_ms"], "ms CPU/conv", False)
    if "fsync" in ev:
        _collect(figs, f"{key}.fsync", ev["fsync"], "fsyncs/conv", False)
    _collect(figs, f"{key}.wrong", float(ev["result"]["wrong"]), "wrong or failed", False)
    _collect(figs, f"{key}.done", float(ev["result"]["done"]), "conversations")
    return figs


async def peers(env: BenchEnv) -> Figures:
    figs: Figures = {}
    start = next(_rounds) % len(SYSTEMS)
    for name in SYSTEMS[start:] + SYSTEMS[:start]:
        why = info(name).missing()
        if why is not None:
            # Skipped, never faked: an empty figure whose unit carries the reason (report.py shows it).
            figs[f"peer.{name}.skipped"] = Measure([], why)
            continue
        t0 = time.perf_counter()
        try:
            ev = await trial(env, name)
            env.log(f"  · peers: {name} took {time.perf_counter() - t0:.1f}s")
        except BenchError as exc:
            figs[f"peer.{name}.failed"] = Measure([], str(exc).splitlines()[0][:300])
            env.log(str(exc))
            continue
        if ev["result"]["wrong"]:
            env.log(f"  {name}: {ev['result']['wrong']} conversations wrong, first: {ev['result']['first_wrong']}")
        if "fsync_error" in ev:
            env.log(f"  {name}: fsyncs not counted: {ev['fsync_error']}")
        for k, m in figures_of(name, ev).items():
            figs[k] = m
    return figs
