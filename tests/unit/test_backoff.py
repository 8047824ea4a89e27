from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledgerbus.errors import ConfigError
from ledgerbus.orchestrator.backoff import Backoff, RetryPolicy

backoffs = st.builds(
    Backoff,
    initial=st.floats(min_value=0.0, max_value=100.0),
    multiplier=st.floats(min_value=1.0, max_value=10.0),
    cap=st.floats(min_value=0.0, max_value=1000.0),
    jitter=st.sampled_from(["full", "none"]),
)


def test_default_ceilings_follow_the_design() -> None:
    # DESIGN.md: 0.5 s x 2, cap 10 s.
    assert [Backoff().ceiling(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_retry_numbers_start_at_one() -> None:
    with pytest.raises(ValueError):
        Backoff().ceiling(0)
    with pytest.raises(ValueError):
        Backoff().delay(0, random.Random(1))


def test_no_jitter_waits_the_ceiling() -> None:
    b = Backoff(jitter="none")
    assert [b.delay(n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]


def test_seeded_rng_makes_delays_reproducible() -> None:
    b = Backoff()
    first = [b.delay(n, random.Random(7)) for n in range(1, 6)]
    again = [b.delay(n, random.Random(7)) for n in range(1, 6)]
    assert first == again


def test_full_jitter_spreads_over_the_whole_range() -> None:
    rng = random.Random(42)
    samples = [Backoff().delay(4, rng) for _ in range(2000)]  # ceiling 4.0
    assert min(samples) < 0.2
    assert max(samples) > 3.8
    assert 1.8 < sum(samples) / len(samples) < 2.2


def test_huge_retry_numbers_are_capped_not_overflowing() -> None:
    assert Backoff().ceiling(100_000) == 10.0


@pytest.mark.parametrize("kwargs", [
    {"initial": -1.0}, {"initial": math.nan}, {"multiplier": 0.5}, {"cap": -0.1},
    {"cap": math.inf}, {"jitter": "equal"},
])
def test_invalid_backoff_is_a_config_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        Backoff(**kwargs)  # type: ignore[arg-type]


@given(backoffs, st.integers(min_value=1, max_value=2000), st.integers(min_value=0))
def test_delay_is_within_zero_and_ceiling(b: Backoff, retry: int, seed: int) -> None:
    d = b.delay(retry, random.Random(seed))
    assert 0.0 <= d <= b.ceiling(retry)


@given(backoffs, st.integers(min_value=1, max_value=2000))
def test_ceilings_are_non_decreasing_and_capped(b: Backoff, retry: int) -> None:
    assert b.ceiling(retry) <= b.ceiling(retry + 1) <= b.cap


def test_retry_policy_defaults_follow_the_design() -> None:
    p = RetryPolicy()
    assert p.max_attempts == 3
    assert p.backoff == Backoff(0.5, 2.0, 10.0, "full")


def test_only_retryable_errors_are_retried_and_only_up_to_max_attempts() -> None:
    p = RetryPolicy()
    assert p.should_retry(1, retryable=True)
    assert p.should_retry(2, retryable=True)
    assert not p.should_retry(3, retryable=True)  # the third attempt was the last
    assert not p.should_retry(1, retryable=False)
    assert not RetryPolicy(max_attempts=1).should_retry(1, retryable=True)


def test_attempts_start_at_one() -> None:
    with pytest.raises(ValueError):
        RetryPolicy().should_retry(0, retryable=True)


@pytest.mark.parametrize("n", [0, -1, 2.5])
def test_invalid_max_attempts_is_a_config_error(n: object) -> None:
    with pytest.raises(ConfigError):
        RetryPolicy(max_attempts=n)  # type: ignore[arg-type]


def test_next_delay_after_attempt_n_is_the_backoff_of_retry_n() -> None:
    p = RetryPolicy(backoff=Backoff(jitter="none"))
    assert [p.next_delay(a) for a in (1, 2, 3)] == [0.5, 1.0, 2.0]


@given(st.integers(min_value=1, max_value=20))
def test_an_always_retryable_task_gets_exactly_max_attempts(max_attempts: int) -> None:
    p = RetryPolicy(max_attempts=max_attempts)
    attempt = 1
    while p.should_retry(attempt, retryable=True):
        assert 0.0 <= p.next_delay(attempt, random.Random(attempt)) <= p.backoff.ceiling(attempt)
        attempt += 1
    assert attempt == max_attempts
