from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledgerbus.errors import ConfigError
from fakeclock import FakeClock

from ledgerbus.orchestrator.breaker import BreakerRegistry, BreakerState, CircuitBreaker

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


@dataclass(frozen=True)
class Settings:
    failure_threshold: int
    reset_timeout: float


def make(threshold: int = 3, reset: float = 10.0) -> tuple[CircuitBreaker, FakeClock, list]:
    clock = FakeClock()
    seen: list[tuple[str, BreakerState, BreakerState]] = []
    breaker = CircuitBreaker("search", threshold, reset, clock=clock,
                             on_transition=lambda *t: seen.append(t))
    return breaker, clock, seen


def test_state_values_are_lowercase_strings() -> None:
    assert [s.value for s in BreakerState] == ["closed", "open", "half_open"]


def test_defaults_follow_the_design() -> None:
    b = CircuitBreaker("x")
    assert (b.failure_threshold, b.reset_timeout, b.state) == (5, 30.0, CLOSED)


def test_opens_after_threshold_consecutive_failures() -> None:
    b, _, seen = make(threshold=3)
    for _ in range(2):
        b.record_failure()
        assert b.allow() and b.state is CLOSED
    b.record_failure()
    assert b.state is OPEN
    assert not b.allow()
    assert seen == [("search", CLOSED, OPEN)]


def test_a_success_resets_the_consecutive_count() -> None:
    b, _, _ = make(threshold=3)
    b.record_failure()
    b.record_failure()
    b.record_success()
    b.record_failure()
    b.record_failure()
    assert b.state is CLOSED


def test_open_refuses_until_the_cool_down_then_lets_one_probe_through() -> None:
    b, clock, seen = make(threshold=1, reset=10.0)
    b.record_failure()
    assert b.retry_after() == 10.0
    clock.advance(9.9)
    assert not b.allow()
    assert b.retry_after() == pytest.approx(0.1)
    clock.advance(0.1)
    assert b.retry_after() == 0.0
    assert b.allow()  # the probe
    assert b.state is HALF_OPEN
    assert not b.allow()  # no second probe while the first is in flight
    assert b.retry_after() > 0
    assert seen == [("search", CLOSED, OPEN), ("search", OPEN, HALF_OPEN)]


def test_probe_success_closes() -> None:
    b, clock, seen = make(threshold=1)
    b.record_failure()
    clock.advance(10)
    assert b.allow()
    b.record_success()
    assert b.state is CLOSED and b.failures == 0
    assert b.allow() and b.allow()
    assert seen[-1] == ("search", HALF_OPEN, CLOSED)


def test_probe_failure_reopens_with_a_fresh_cool_down() -> None:
    b, clock, seen = make(threshold=3, reset=10.0)
    for _ in range(3):
        b.record_failure()
    clock.advance(25)
    assert b.allow()
    b.record_failure()  # a single failure suffices in half-open
    assert b.state is OPEN
    assert b.retry_after() == 10.0
    assert not b.allow()
    assert [t[2] for t in seen] == [OPEN, HALF_OPEN, OPEN]


def test_outcomes_reported_while_open_are_ignored() -> None:
    b, clock, seen = make(threshold=1, reset=10.0)
    b.record_failure()
    clock.advance(5)
    b.record_success()  # a request sent before the breaker opened
    assert b.state is OPEN
    b.record_failure()
    assert b.retry_after() == 5.0  # the cool-down was not re-armed
    assert len(seen) == 1


def test_release_gives_the_probe_back() -> None:
    b, clock, _ = make(threshold=1)
    b.record_failure()
    clock.advance(10)
    assert b.allow()
    assert not b.allow()
    b.release()
    assert b.allow()
    assert not b.allow()


def test_transitions_are_recorded_with_the_time() -> None:
    b, clock, _ = make(threshold=1, reset=10.0)
    b.record_failure()
    clock.advance(10)
    b.allow()
    b.record_success()
    assert [(t.old, t.new, t.at) for t in b.transitions] == [
        (CLOSED, OPEN, 1000.0), (OPEN, HALF_OPEN, 1010.0), (HALF_OPEN, CLOSED, 1010.0)]
    assert all(t.name == "search" for t in b.transitions)


def test_a_failing_callback_propagates_but_leaves_the_state_consistent() -> None:
    def boom(*_: object) -> None:
        raise RuntimeError("ledger down")

    b = CircuitBreaker("x", 1, 10.0, clock=FakeClock(), on_transition=boom)
    with pytest.raises(RuntimeError):
        b.record_failure()
    assert b.state is OPEN and not b.allow()


@pytest.mark.parametrize("kwargs", [
    {"failure_threshold": 0}, {"failure_threshold": 1.5}, {"reset_timeout": -1.0},
    {"reset_timeout": float("nan")},
])
def test_invalid_settings_are_config_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        CircuitBreaker("x", **kwargs)  # type: ignore[arg-type]


def test_registry_creates_one_breaker_per_type_with_its_settings() -> None:
    clock = FakeClock()
    seen: list[tuple[str, BreakerState, BreakerState]] = []
    reg = BreakerRegistry(default=Settings(5, 30.0), per_type={"slow": Settings(1, 60.0)},
                          clock=clock, on_transition=lambda *t: seen.append(t))
    assert "slow" not in reg
    slow, fast = reg.get("slow"), reg["fast"]
    assert reg.get("slow") is slow and len(reg) == 2
    assert (slow.failure_threshold, slow.reset_timeout) == (1, 60.0)
    assert (fast.failure_threshold, fast.reset_timeout) == (5, 30.0)
    slow.record_failure()
    assert seen == [("slow", CLOSED, OPEN)]
    assert reg.states() == {"slow": OPEN, "fast": CLOSED}
    clock.advance(59)
    assert not slow.allow()  # the registry's clock is the breakers' clock


def test_registry_without_settings_uses_the_design_defaults() -> None:
    b = BreakerRegistry().get("x")
    assert (b.failure_threshold, b.reset_timeout) == (5, 30.0)


ops = st.lists(
    st.one_of(
        st.sampled_from(["allow", "success", "failure", "release"]),
        st.floats(min_value=0.0, max_value=20.0),  # advance the clock
    ),
    max_size=200,
)


@given(ops, st.integers(min_value=1, max_value=4), st.floats(min_value=0.0, max_value=15.0))
def test_half_open_never_lets_two_probes_through(sequence: list, threshold: int,
                                                 reset: float) -> None:
    clock = FakeClock()
    b = CircuitBreaker("x", threshold, reset, clock=clock)
    probes = 0  # probes granted since entering half-open and not released
    for op in sequence:
        before = b.state
        if op == "allow":
            granted = b.allow()
            if before is CLOSED:
                assert granted
            if before is OPEN and b.state is OPEN:
                assert not granted
            if b.state is HALF_OPEN and granted:
                probes += 1
        elif op == "success":
            b.record_success()
        elif op == "failure":
            b.record_failure()
        elif op == "release":
            b.release()
            probes = 0
        else:
            clock.advance(op)
        if b.state is not HALF_OPEN:
            probes = 0
        assert probes <= 1
        assert b.retry_after() >= 0.0
        if b.state is CLOSED:
            assert b.failures < threshold
