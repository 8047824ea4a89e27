"""The orchestrator's own clock: unix milliseconds that never run backwards, and the waits measured on it.

Receipt, stall and timeout windows are measured on it (DESIGN.md, "Time is the observer's"): anchored to
the wall clock once, then advanced by the monotonic clock, so a wall-clock step (NTP, a suspended VM)
neither fires nor postpones a window, and the readings still compare with unix-ms deadlines.

Everything in the orchestrator that waits for time to pass (attempt windows, retry backoffs, breaker
cool-downs, rate-limit refills) asks its `Clock`, so a test can hand it a virtual one.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """What the orchestrator reads time from and waits on."""

    def __call__(self) -> int:
        """Unix milliseconds, never running backwards."""
        ...

    def monotonic(self) -> float:
        """Seconds, for durations (breaker cool-downs, token refills, backoffs)."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        """Wait until `event` is set (True) or `timeout` seconds have passed (False)."""
        ...


class ObserverClock:
    def __init__(self) -> None:
        self._wall0 = time.time_ns() // 1_000_000
        self._mono0 = time.monotonic_ns() // 1_000_000

    def __call__(self) -> int:
        return self._wall0 + (time.monotonic_ns() // 1_000_000 - self._mono0)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True
