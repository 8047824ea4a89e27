"""Worker processes (responders, agent hosts) and what they cost: resident memory and CPU time.

Baselines answer from another process, so ledgerbus agents do too: the comparison is between
whole systems on the same two cores, never one event loop flattering itself.
psutil is used when installed (the `bench` extra); /proc is the fallback on Linux.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bench.harness import BenchError

ROOT = Path(__file__).resolve().parent.parent


def rss_bytes(pid: int | None = None) -> int:
    pid = pid or os.getpid()
    try:
        import psutil

        return int(psutil.Process(pid).memory_info().rss)
    except ImportError:
        pass
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time of a process so far."""
    pid = pid or os.getpid()
    try:
        import psutil

        t = psutil.Process(pid).cpu_times()
        return float(t.user + t.system)
    except ImportError:
        pass
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Worker:
    """A `python -m bench.workers KIND ...` child: it prints one JSON line when it is ready."""

    proc: asyncio.subprocess.Process
    ready: dict[str, Any]
    log: IO[bytes]

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def stop(self, timeout: float = 10.0) -> None:
        if self.proc.returncode is not None:
            self.log.close()
            return
        self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except asyncio.TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        self.log.close()


async def spawn(kind: str, *args: str, timeout: float = 60.0) -> Worker:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    # stderr goes to a file, not a pipe: a chatty worker must never block on a pipe nobody reads.
    log = tempfile.TemporaryFile()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.workers", kind, *args,
        stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, env=env, cwd=str(ROOT),
    )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), timeout)
    except asyncio.TimeoutError:
        line = b""
    if not line:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        log.seek(0)
        err = log.read().decode(errors="replace")[-2000:]
        log.close()
        raise BenchError(f"worker {kind} did not become ready:\n{err}")
    return Worker(proc, json.loads(line), log)
