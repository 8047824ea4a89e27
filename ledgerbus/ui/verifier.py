"""`ledgerbus verify` for the Integrity page, in the background: a million events take tens of seconds.

The page shows the last result (and up to which position it holds) at once, and while a run goes on,
that it does and for how long. On a big ledger a run is a process of its own (`python -m
ledgerbus.ui.verifier LEDGER`, which prints the report): the verify is Python work for every event, and in
a thread of the server it would hold the interpreter's lock against every other page for its whole
length. A small one is verified in a thread, quicker than a process starts.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from ledgerbus.errors import LedgerbusError
from ledgerbus.eventstore.integrity import VerifyReport
from ledgerbus.eventstore.sqlite import SQLiteEventStore


@dataclass(frozen=True)
class Verdict:
    report: VerifyReport
    upto: int  # the ledger's last position when the run began: what the report covers
    finished_at: float
    took_s: float


@dataclass(frozen=True)
class Status:
    """What the page shows: the last verdict (None before the first), and a run under way since when."""

    last: Verdict | None
    running_since: float | None
    running_upto: int | None
    error: str | None


#: Ledgers up to this many positions are verified in a thread of the server (well under a second).
IN_PROCESS_MAX = 50_000


class Verifier:
    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path, self.clock = path, clock
        self._last: Verdict | None = None
        self._job: asyncio.Task[None] | None = None
        self._since: float | None = None
        self._upto: int | None = None
        self._error: str | None = None
        self._proc: asyncio.subprocess.Process | None = None

    def status(self) -> Status:
        running = self._job is not None and not self._job.done()
        return Status(self._last, self._since if running else None, self._upto if running else None, self._error)

    def ensure(self, last_position: int) -> asyncio.Task[None] | None:
        """The run under way, or a new one when there is no verdict yet or the ledger grew past it; None
        when the last verdict still covers the whole ledger."""
        if self._job is not None and not self._job.done():
            return self._job
        if self._last is not None and self._last.upto >= last_position:
            return None
        self._since, self._upto = self.clock(), last_position
        self._job = asyncio.ensure_future(self._run(last_position))
        return self._job

    async def _run(self, upto: int) -> None:
        started = self.clock()
        if upto <= IN_PROCESS_MAX:
            try:
                report = await asyncio.to_thread(verify_file, self.path)
            except (LedgerbusError, sqlite3.Error) as exc:
                self._error = f"cannot verify {self.path}: {exc}"
                return
        else:
            out = await self._in_a_process()
            if out is None:
                return
            report = msgspec.json.decode(out, type=VerifyReport)
        self._error = None
        now = self.clock()
        self._last = Verdict(report, upto, now, now - started)

    async def _in_a_process(self) -> bytes | None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ledgerbus.ui.verifier", str(self.path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await self._proc.communicate()
        if self._proc.returncode != 0:
            lines = err.decode("utf-8", "replace").strip().splitlines()
            self._error = lines[-1] if lines else f"the verify exited with {self._proc.returncode}"
            return None
        return out

    async def stop(self) -> None:
        if self._job is not None and not self._job.done():
            if self._proc is not None and self._proc.returncode is None:
                self._proc.kill()
            self._job.cancel()
            await asyncio.gather(self._job, return_exceptions=True)


def verify_file(path: Path) -> VerifyReport:
    store = SQLiteEventStore(path, readonly=True)
    try:
        return store.verify()
    finally:
        store.close()


def main(path: str) -> int:
    try:
        report = verify_file(Path(path))
    except (LedgerbusError, sqlite3.Error) as exc:
        print(f"cannot verify {path}: {exc}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(msgspec.json.encode(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
