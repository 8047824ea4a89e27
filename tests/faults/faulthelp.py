"""Helpers for fault tests: subprocesses we start (and kill), bounded waits."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent


async def eventually(pred: Callable[[], bool], timeout: float = 10.0, what: str = "condition", every: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(every)


async def spawn(script: str, *args: str, log: Path | None = None) -> asyncio.subprocess.Process:
    out = open(log, "ab") if log else asyncio.subprocess.DEVNULL
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable, str(HERE / script), *args, stdout=out, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    finally:
        if log:
            out.close()  # type: ignore[union-attr]


async def kill9(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await proc.wait()
