"""Retry timing: exponential backoff with full jitter, and when a failed attempt is retried.

Pure: randomness comes from an injectable `random.Random`, so tests and replays are deterministic.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Literal

from ledgerbus.errors import ConfigError

Jitter = Literal["full", "none"]


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


@dataclass(frozen=True)
class Backoff:
    """Delay before the n-th retry: `min(cap, initial * multiplier**(n-1))`, jittered.

    Full jitter (uniform in [0, ceiling]) rather than "equal" or no jitter because retries of
    many tasks that failed together would otherwise hit a recovering agent in lock-step.
    """

    initial: float = 0.5
    multiplier: float = 2.0
    cap: float = 10.0
    jitter: Jitter = "full"

    def __post_init__(self) -> None:
        _require(math.isfinite(self.initial) and self.initial >= 0,
                 f"backoff initial must be a finite number >= 0, got {self.initial!r}")
        _require(math.isfinite(self.multiplier) and self.multiplier >= 1,
                 f"backoff multiplier must be a finite number >= 1, got {self.multiplier!r}")
        _require(math.isfinite(self.cap) and self.cap >= 0,
                 f"backoff cap must be a finite number >= 0, got {self.cap!r}")
        _require(self.jitter in ("full", "none"),
                 f"backoff jitter must be 'full' or 'none', got {self.jitter!r}")

    def ceiling(self, retry: int) -> float:
        """Largest delay before retry number `retry` (the first retry is 1)."""
        if retry < 1:
            raise ValueError(f"retry counts from 1, got {retry}")
        try:
            raw = self.initial * self.multiplier ** (retry - 1)
        except OverflowError:  # a huge retry number: the cap applies long before
            return self.cap
        return min(self.cap, raw)

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """The delay to actually wait before retry number `retry`."""
        ceiling = self.ceiling(retry)
        if self.jitter == "none":
            return ceiling
        # The module-level functions share one hidden Random; callers that need
        # reproducible delays pass their own.
        source = rng if rng is not None else random
        return source.uniform(0.0, ceiling)


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts a task gets and how long to wait between them.

    `attempt` is the 1-based number of the attempt that just failed, matching the envelope's
    `attempt` field; the wait before attempt n+1 is the backoff of retry n.
    """

    max_attempts: int = 3
    backoff: Backoff = field(default_factory=Backoff)

    def __post_init__(self) -> None:
        _require(isinstance(self.max_attempts, int) and self.max_attempts >= 1,
                 f"max_attempts must be an integer >= 1, got {self.max_attempts!r}")

    def should_retry(self, attempt: int, retryable: bool) -> bool:
        """Whether to send another attempt after attempt number `attempt` failed.

        Non-retryable errors (bad input, unknown capability...) would fail the same way again.
        """
        if attempt < 1:
            raise ValueError(f"attempt counts from 1, got {attempt}")
        return retryable and attempt < self.max_attempts

    def next_delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after attempt number `attempt` failed, before sending the next one."""
        return self.backoff.delay(attempt, rng)
