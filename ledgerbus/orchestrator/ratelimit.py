"""Token-bucket rate limits: one bucket per agent type plus one global bucket.

Every request the orchestrator publishes — first attempts, retries, resumes and replays — goes
through the same limiter, so recovering from a crash cannot flood the agents.
Pure except `RateLimiter.acquire`, whose sleep is injectable. Not thread-safe: one event loop.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from ledgerbus.errors import ConfigError
from ledgerbus.orchestrator.policy import RateLimitPolicy

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[object]]

# Refill arithmetic is floating point: 3 refills of 1/3 s at 3 tokens/s may leave 0.999...
# tokens. Without this slack the limiter would ask callers to wait ~1e-16 s, which a large
# monotonic clock reading cannot even represent, and `acquire` could spin forever.
_EPSILON = 1e-9


def _unlimited(rate: float | None) -> bool:
    return rate is None or rate == math.inf


class TokenBucket:
    """`burst` tokens at most, refilled continuously at `rate` tokens per second; starts full.

    `rate=None` (or infinity) means unlimited: every request is granted at once.
    """

    def __init__(self, rate: float | None, burst: float, clock: Clock = time.monotonic) -> None:
        if not _unlimited(rate):
            assert rate is not None
            if not (math.isfinite(rate) and rate > 0):
                raise ConfigError(f"rate must be a number > 0 (or None for unlimited), got {rate!r}")
            if not (math.isfinite(burst) and burst >= 1):
                raise ConfigError(f"burst must be a finite number >= 1, got {burst!r}")
        self.rate = None if _unlimited(rate) else rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._last = clock()

    @property
    def unlimited(self) -> bool:
        return self.rate is None

    @property
    def tokens(self) -> float:
        """Tokens available now (infinite when unlimited)."""
        if self.rate is None:
            return math.inf
        self._refill()
        return self._tokens

    def try_acquire(self, n: float = 1.0) -> bool:
        """Take `n` tokens if they are all available now; take nothing otherwise."""
        if self.wait_time(n) > 0.0:
            return False
        self._take(n)
        return True

    def wait_time(self, n: float = 1.0) -> float:
        """Seconds until `n` tokens are available (0 if now), assuming nobody else takes any."""
        self._check(n)
        if self.rate is None:
            return 0.0
        self._refill()
        missing = n - self._tokens
        return 0.0 if missing <= _EPSILON else missing / self.rate

    def _take(self, n: float) -> None:
        # Only called right after wait_time(n) returned 0, so the refill is current.
        if self.rate is not None:
            self._tokens = max(0.0, self._tokens - n)

    def _check(self, n: float) -> None:
        if not n > 0:
            raise ValueError(f"token count must be > 0, got {n!r}")
        if self.rate is not None and n > self.burst:
            # It could never be granted: a caller looping on wait_time would hang.
            raise ValueError(f"cannot take {n} tokens from a bucket of burst {self.burst}")

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._last
        if elapsed > 0:  # a clock that steps back must not drain the bucket
            assert self.rate is not None
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
            self._last = now

    def __repr__(self) -> str:
        if self.rate is None:
            return "TokenBucket(unlimited)"
        return f"TokenBucket(rate={self.rate}, burst={self.burst}, tokens={self.tokens:.3f})"


def _burst_for(rate: float | None, burst: float | None) -> float:
    """A burst left unset allows one second's worth of requests at once (at least one)."""
    if burst is not None:
        return burst
    if rate is None or rate == math.inf:
        return 1.0
    return max(1.0, float(rate))


class Limiter(Protocol):
    """What the orchestrator asks before every REQUEST it sends: `RateLimiter`, or one wrapping it."""

    async def acquire(self, key: str, n: float = 1.0, sleep: Sleep = asyncio.sleep) -> float: ...


class RateLimiter:
    """A global bucket plus one bucket per key (agent type), created on first use.

    Keys missing from `per_key` get `default_rate`/`default_burst`. A request is granted only
    when both its key's bucket and the global bucket can pay; then both pay, never just one.
    A burst left as None defaults to one second's worth of its rate.
    """

    def __init__(self, global_rate: float | None = None, global_burst: float | None = None,
                 per_key: Mapping[str, tuple[float | None, float]] | None = None,
                 default_rate: float | None = None, default_burst: float | None = None,
                 clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._global = TokenBucket(global_rate, _burst_for(global_rate, global_burst), clock)
        self._default = (default_rate, _burst_for(default_rate, default_burst))
        # Building the configured buckets (and a throwaway default one) up front validates
        # the settings at start-up rather than on the first request for some key.
        TokenBucket(*self._default, clock)
        self._buckets = {key: TokenBucket(rate, burst, clock)
                         for key, (rate, burst) in (per_key or {}).items()}

    @property
    def global_bucket(self) -> TokenBucket:
        return self._global

    def bucket(self, key: str) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            rate, burst = self._default
            bucket = self._buckets[key] = TokenBucket(rate, burst, self._clock)
        return bucket

    def try_acquire(self, key: str, n: float = 1.0) -> float:
        """0.0 if `n` tokens were taken for `key`, else the seconds to wait before trying again.

        The wait is a lower bound: another caller may take the tokens in the meantime.
        """
        own = self.bucket(key)
        wait = max(own.wait_time(n), self._global.wait_time(n))
        if wait > 0.0:
            return wait
        own._take(n)
        self._global._take(n)
        return 0.0

    async def acquire(self, key: str, n: float = 1.0, sleep: Sleep = asyncio.sleep) -> float:
        """Wait until `n` tokens for `key` are taken; return the total time slept.

        Waiters are not queued: under contention whoever retries first after a refill wins.
        """
        slept = 0.0
        while True:
            wait = self.try_acquire(key, n)
            if wait == 0.0:
                return slept
            await sleep(wait)
            slept += wait


def from_policy(rate: RateLimitPolicy, clock: Clock = time.monotonic) -> RateLimiter:
    """The limiter a policy set's rate limits describe."""
    return RateLimiter(global_rate=rate.global_rate, global_burst=rate.global_burst, per_key=rate.per_agent,
                       default_rate=rate.agent_rate, default_burst=rate.agent_burst, clock=clock)
