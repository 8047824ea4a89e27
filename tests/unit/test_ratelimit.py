from __future__ import annotations

import asyncio
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledgerbus.errors import ConfigError
from fakeclock import FakeClock

from ledgerbus.orchestrator.ratelimit import RateLimiter, TokenBucket


def fake_sleep(clock: FakeClock, log: list[float] | None = None):
    async def sleep(seconds: float) -> None:
        if log is not None:
            log.append(seconds)
        clock.advance(seconds)
        await asyncio.sleep(0)  # still yield, as a real sleep would

    return sleep


# --- TokenBucket -----------------------------------------------------------------------------

def test_bucket_starts_full_and_empties() -> None:
    b = TokenBucket(10.0, 3.0, FakeClock())
    assert [b.try_acquire() for _ in range(4)] == [True, True, True, False]


def test_wait_time_says_when_tokens_come_back() -> None:
    clock = FakeClock()
    b = TokenBucket(10.0, 2.0, clock)
    assert b.wait_time() == 0.0
    b.try_acquire(2.0)
    assert b.wait_time() == pytest.approx(0.1)
    assert b.wait_time(2.0) == pytest.approx(0.2)
    clock.advance(0.05)
    assert not b.try_acquire()
    assert b.wait_time() == pytest.approx(0.05)
    clock.advance(0.05)
    assert b.try_acquire()


def test_refill_is_capped_at_burst() -> None:
    clock = FakeClock()
    b = TokenBucket(10.0, 2.0, clock)
    clock.advance(3600)
    assert b.tokens == 2.0
    assert [b.try_acquire() for _ in range(3)] == [True, True, False]


def test_refused_acquire_takes_nothing() -> None:
    b = TokenBucket(1.0, 3.0, FakeClock())
    assert b.try_acquire(2.0)
    assert not b.try_acquire(2.0)
    assert b.tokens == pytest.approx(1.0)


@pytest.mark.parametrize("rate", [None, math.inf])
def test_unlimited_bucket_always_grants(rate: float | None) -> None:
    b = TokenBucket(rate, 1.0, FakeClock())
    assert b.unlimited
    assert all(b.try_acquire(1000.0) for _ in range(1000))
    assert b.wait_time(1e9) == 0.0


def test_a_request_larger_than_burst_is_refused_loudly() -> None:
    b = TokenBucket(1.0, 2.0, FakeClock())
    with pytest.raises(ValueError):
        b.wait_time(3.0)
    with pytest.raises(ValueError):
        b.try_acquire(0.0)


@pytest.mark.parametrize("rate,burst", [(0.0, 1.0), (-1.0, 1.0), (math.nan, 1.0), (1.0, 0.5),
                                        (1.0, math.inf)])
def test_invalid_bucket_is_a_config_error(rate: float, burst: float) -> None:
    with pytest.raises(ConfigError):
        TokenBucket(rate, burst, FakeClock())


def test_a_clock_stepping_back_neither_adds_nor_removes_tokens() -> None:
    clock = FakeClock()
    b = TokenBucket(1.0, 2.0, clock)
    b.try_acquire()
    clock.advance(-100)
    assert b.tokens == pytest.approx(1.0)
    clock.advance(100.5)
    assert b.tokens == pytest.approx(1.5)


def test_float_refill_rounding_does_not_leave_a_tiny_wait() -> None:
    # 3 refills of 1/3 s at 3/s are 0.999... tokens; at clock 1e9 a 1e-16 s sleep would
    # not even move the clock.
    clock = FakeClock(1e9)
    b = TokenBucket(3.0, 1.0, clock)
    assert b.try_acquire()
    for _ in range(3):
        clock.advance(1 / 9)
        b.tokens  # force a refill at each step
    clock.advance(2 / 9)
    assert b.wait_time() == 0.0
    assert b.try_acquire()


@given(
    rate=st.floats(min_value=0.1, max_value=1000.0),
    burst=st.floats(min_value=1.0, max_value=100.0),
    schedule=st.lists(st.tuples(st.floats(min_value=0.0, max_value=2.0),
                                st.floats(min_value=0.01, max_value=1.0)), max_size=100),
)
def test_bucket_never_grants_more_than_burst_plus_rate_times_elapsed(
        rate: float, burst: float, schedule: list[tuple[float, float]]) -> None:
    clock = FakeClock()
    start = clock.now
    b = TokenBucket(rate, burst, clock)
    granted = 0.0
    for dt, fraction in schedule:
        clock.advance(dt)
        n = max(fraction * burst, 1e-6)
        if b.try_acquire(n):
            granted += n
        limit = burst + rate * (clock.now - start)
        assert granted <= limit + 1e-6 * max(1.0, limit)


@given(
    rate=st.floats(min_value=0.1, max_value=1000.0),
    burst=st.floats(min_value=1.0, max_value=100.0),
    takes=st.lists(st.floats(min_value=0.01, max_value=1.0), min_size=1, max_size=30),
)
def test_waiting_the_announced_time_is_enough(rate: float, burst: float,
                                              takes: list[float]) -> None:
    clock = FakeClock()
    b = TokenBucket(rate, burst, clock)
    for fraction in takes:
        n = fraction * burst
        clock.advance(b.wait_time(n))
        assert b.try_acquire(n)


# --- RateLimiter -----------------------------------------------------------------------------

def test_limiter_takes_from_both_buckets() -> None:
    clock = FakeClock()
    lim = RateLimiter(global_rate=10.0, global_burst=3.0, per_key={"a": (1.0, 2.0)},
                      default_rate=None, clock=clock)
    assert lim.try_acquire("a") == 0.0
    assert lim.try_acquire("a") == 0.0
    assert lim.try_acquire("a") == pytest.approx(1.0)  # a's bucket is empty
    assert lim.try_acquire("b") == 0.0  # b is unlimited, but the global bucket pays
    assert lim.try_acquire("b") == pytest.approx(0.1)
    assert lim.global_bucket.tokens == pytest.approx(0.0)


def test_a_global_refusal_takes_nothing_from_the_key_bucket() -> None:
    lim = RateLimiter(global_rate=1.0, global_burst=1.0, per_key={"a": (1.0, 5.0)},
                      clock=FakeClock())
    assert lim.try_acquire("a") == 0.0
    for _ in range(10):
        assert lim.try_acquire("a") > 0.0
    assert lim.bucket("a").tokens == pytest.approx(4.0)


def test_a_key_refusal_takes_nothing_from_the_global_bucket() -> None:
    lim = RateLimiter(global_rate=1.0, global_burst=5.0, per_key={"a": (1.0, 1.0)},
                      clock=FakeClock())
    assert lim.try_acquire("a") == 0.0
    for _ in range(10):
        assert lim.try_acquire("a") > 0.0
    assert lim.global_bucket.tokens == pytest.approx(4.0)


def test_the_wait_is_the_longer_of_the_two() -> None:
    lim = RateLimiter(global_rate=2.0, global_burst=1.0, per_key={"a": (0.5, 1.0)},
                      clock=FakeClock())
    assert lim.try_acquire("a") == 0.0
    assert lim.try_acquire("a") == pytest.approx(2.0)


def test_unknown_keys_get_the_default_and_bursts_default_to_one_second() -> None:
    lim = RateLimiter(global_rate=None, default_rate=4.0, clock=FakeClock())
    assert lim.bucket("x").burst == 4.0
    assert lim.bucket("x") is lim.bucket("x")
    assert lim.bucket("y") is not lim.bucket("x")
    assert lim.global_bucket.unlimited


def test_everything_unlimited_by_default() -> None:
    lim = RateLimiter(clock=FakeClock())
    assert all(lim.try_acquire("k") == 0.0 for _ in range(10_000))


def test_invalid_per_key_settings_fail_at_construction() -> None:
    with pytest.raises(ConfigError):
        RateLimiter(per_key={"a": (0.0, 1.0)}, clock=FakeClock())
    with pytest.raises(ConfigError):
        RateLimiter(default_rate=-1.0, clock=FakeClock())


async def test_acquire_sleeps_through_the_injected_sleep() -> None:
    clock = FakeClock()
    slept: list[float] = []
    lim = RateLimiter(global_rate=10.0, global_burst=1.0, clock=clock)
    assert await lim.acquire("a", sleep=fake_sleep(clock, slept)) == 0.0
    waited = await lim.acquire("a", sleep=fake_sleep(clock, slept))
    assert waited == pytest.approx(0.1)
    assert sum(slept) == pytest.approx(0.1)
    assert clock.now == pytest.approx(1000.1)


async def test_concurrent_acquires_are_paced_by_the_rate() -> None:
    clock = FakeClock()
    lim = RateLimiter(global_rate=100.0, global_burst=5.0, per_key={"slow": (10.0, 2.0)},
                      clock=clock)
    sleep = fake_sleep(clock)
    await asyncio.gather(*(lim.acquire("slow", sleep=sleep) for _ in range(12)))
    # 2 from the burst, then 10 more at 10/s: at least 1 s of (fake) time.
    assert clock.now - 1000.0 >= 1.0 - 1e-6


@given(
    grate=st.floats(min_value=1.0, max_value=100.0),
    gburst=st.floats(min_value=1.0, max_value=20.0),
    krate=st.floats(min_value=1.0, max_value=100.0),
    kburst=st.floats(min_value=1.0, max_value=20.0),
    schedule=st.lists(st.tuples(st.floats(min_value=0.0, max_value=0.5),
                                st.sampled_from(["a", "b", "c"])), max_size=150),
)
def test_limiter_respects_every_bucket_over_any_schedule(
        grate: float, gburst: float, krate: float, kburst: float,
        schedule: list[tuple[float, str]]) -> None:
    clock = FakeClock()
    lim = RateLimiter(global_rate=grate, global_burst=gburst, default_rate=krate,
                      default_burst=kburst, clock=clock)
    granted: dict[str, int] = {}
    for dt, key in schedule:
        clock.advance(dt)
        if lim.try_acquire(key) == 0.0:
            granted[key] = granted.get(key, 0) + 1
        elapsed = clock.now - 1000.0
        assert sum(granted.values()) <= gburst + grate * elapsed + 1e-6
        assert all(n <= kburst + krate * elapsed + 1e-6 for n in granted.values())
