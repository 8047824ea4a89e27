"""A virtual clock for the orchestrator: time moves only when a test moves it.

The orchestrator takes its clock as a parameter (orchestrator/clock.py): attempt windows, retry
backoffs, breaker cool-downs and rate-limit refills all read and wait on it. With this one a test
runs those policies in virtual time against real agents on a real server: it waits for the event it
expects (a decision in the fold, the orchestrator waiting on a timer), then moves time on to the
timer instead of sleeping it out. Agents and the server keep real time; envelopes keep their wall-clock
timestamps.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field


@dataclass(eq=False)
class _Timer:
    at: int  # virtual nanoseconds
    requested: float  # the timeout it was asked for
    ring: asyncio.Event = field(default_factory=asyncio.Event)


class VirtualClock:
    def __init__(self) -> None:
        self._wall0 = time.time_ns() // 1_000_000  # readings still compare with envelopes' unix ms
        self._ns = 0  # virtual time, in integer nanoseconds: moving on by a policy's 0.05 s lands on it exactly
        self._timers: list[_Timer] = []
        self._registered = asyncio.Event()
        self.skipped: list[float] = []  # every move of time, in order

    @property
    def _t(self) -> float:
        return self._ns / 1e9

    def __call__(self) -> int:
        return self._wall0 + self._ns // 1_000_000

    def monotonic(self) -> float:
        return self._t

    async def sleep(self, seconds: float) -> None:
        await self.wait(asyncio.Event(), seconds)

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        if event.is_set() or timeout <= 0:
            return event.is_set()
        timer = _Timer(self._ns + max(math.ceil(timeout * 1e9), 1), timeout)
        self._timers.append(timer)
        self._registered.set()
        woken = asyncio.ensure_future(event.wait())
        rung = asyncio.ensure_future(timer.ring.wait())
        try:
            await asyncio.wait({woken, rung}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            rung.cancel()
            self._timers.remove(timer)
        return event.is_set()

    def advance(self, seconds: float) -> None:
        """Move time on by `seconds`, ringing every timer due by then."""
        self._advance_ns(round(seconds * 1e9))

    def _advance_ns(self, ns: int) -> None:
        self._ns += ns
        self.skipped.append(round(ns / 1e9, 6))
        for timer in self._timers:
            if timer.at <= self._ns:
                timer.ring.set()

    async def waiting(self, requested: float | None = None, timeout: float = 10.0) -> float:
        """Once someone waits on a timer (one asked for `requested` seconds, if given): how far off the
        earliest such timer is."""
        def match() -> _Timer | None:
            found = [t for t in self._timers if requested is None or abs(t.requested - requested) < 1e-3]
            return min(found, key=lambda t: t.at) if found else None

        async def registered() -> _Timer:
            while (timer := match()) is None:
                self._registered.clear()
                await self._registered.wait()
            return timer

        timer = await asyncio.wait_for(registered(), timeout)
        return max(timer.at - self._ns, 0) / 1e9

    async def skip_to_timer(self, requested: float | None = None, timeout: float = 10.0) -> float:
        """`waiting`, then move time on to that timer; returns how far time moved."""
        step = await self.waiting(requested, timeout)
        self._advance_ns(round(step * 1e9))
        return round(step, 6)
