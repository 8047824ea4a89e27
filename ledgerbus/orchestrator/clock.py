"""The orchestrator's own clock: unix milliseconds that never run backwards.

Receipt, stall and timeout windows are measured on it (DESIGN.md, "Time is the observer's"): anchored to
the wall clock once, then advanced by the monotonic clock, so a wall-clock step (NTP, a suspended VM)
neither fires nor postpones a window, and the readings still compare with unix-ms deadlines.
"""

from __future__ import annotations

import time


class ObserverClock:
    def __init__(self) -> None:
        self._wall0 = time.time_ns() // 1_000_000
        self._mono0 = time.monotonic_ns() // 1_000_000

    def __call__(self) -> int:
        return self._wall0 + (time.monotonic_ns() // 1_000_000 - self._mono0)
