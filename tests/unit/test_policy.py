from __future__ import annotations

import math
from typing import Any

import pytest

from ledgerbus.errors import ConfigError
from ledgerbus.orchestrator.backoff import Backoff, RetryPolicy
from ledgerbus.orchestrator.breaker import BreakerRegistry
from ledgerbus.orchestrator.policy import (
    BreakerPolicy,
    FallbackCapability,
    FallbackValue,
    PolicySet,
    RateLimitPolicy,
    TaskPolicy,
)
from ledgerbus.orchestrator.ratelimit import RateLimiter


def test_defaults_follow_the_design() -> None:
    p = PolicySet()
    t = p.for_task("any.capability", "any-agent")
    assert (t.receipt_timeout, t.stall_after, t.timeout) == (2.0, 10.0, 30.0)
    assert t.retry == RetryPolicy(3, Backoff(0.5, 2.0, 10.0, "full"))
    assert t.fallback is None
    assert p.breaker == BreakerPolicy(5, 30.0)
    assert (p.rate.global_rate, p.rate.global_burst) == (200.0, 400.0)
    assert p.rate.for_agent("anyone") == (100.0, 200.0)


@pytest.mark.parametrize("field", ["receipt_timeout", "stall_after", "timeout"])
@pytest.mark.parametrize("value", [0.0, -1.0, math.nan, math.inf, "5", True])
def test_bad_timeouts_are_config_errors_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=field):
        TaskPolicy(**{field: value})


@pytest.mark.parametrize("kwargs", [
    {"retry": 3}, {"fallback": {"answer": 42}}, {"fallback": "other.capability"},
])
def test_task_policy_checks_types(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        TaskPolicy(**kwargs)


@pytest.mark.parametrize("kwargs", [
    {"failure_threshold": 0}, {"failure_threshold": True}, {"reset_timeout": -5.0},
])
def test_breaker_policy_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        BreakerPolicy(**kwargs)


@pytest.mark.parametrize("kwargs", [
    {"global_rate": 0.0}, {"global_burst": 0.5}, {"agent_rate": -1.0},
    {"per_agent": {"a": (10.0,)}}, {"per_agent": {"a": (10.0, 0.0)}}, {"per_agent": {"": (1, 1)}},
    {"per_agent": {"a": [10.0, 5.0]}},
])
def test_rate_policy_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        RateLimitPolicy(**kwargs)


def test_unlimited_rates_are_allowed() -> None:
    rate = RateLimitPolicy(global_rate=None, per_agent={"fast": (None, 1.0)})
    assert rate.for_agent("fast") == (None, 1.0)


def test_capability_beats_agent_beats_default() -> None:
    cap, agent = TaskPolicy(timeout=5.0), TaskPolicy(timeout=60.0)
    p = PolicySet(per_capability={"research.search": cap}, per_agent={"researcher": agent})
    assert p.for_task("research.search", "researcher") is cap
    assert p.for_task("research.summarize", "researcher") is agent
    assert p.for_task("research.summarize", "writer") is p.default
    assert p.for_task("research.summarize") is p.default


def test_breaker_for_agent() -> None:
    slow = BreakerPolicy(failure_threshold=2, reset_timeout=120.0)
    p = PolicySet(per_agent_breaker={"llm": slow})
    assert p.breaker_for("llm") is slow
    assert p.breaker_for("other") is p.breaker


def test_overrides_are_read_only_and_detached_from_the_caller() -> None:
    overrides = {"a": TaskPolicy(timeout=1.0)}
    p = PolicySet(per_capability=overrides)
    overrides["b"] = TaskPolicy(timeout=2.0)
    assert "b" not in p.per_capability
    with pytest.raises(TypeError):
        p.per_capability["c"] = TaskPolicy()  # type: ignore[index]


def test_override_values_must_have_the_right_type() -> None:
    with pytest.raises(ConfigError, match="per_capability"):
        PolicySet(per_capability={"a": BreakerPolicy()})  # type: ignore[dict-item]
    with pytest.raises(ConfigError):
        PolicySet(default=None)  # type: ignore[arg-type]


def test_fallback_value_is_a_private_copy() -> None:
    payload = {"answer": {"text": "unknown"}}
    fb = FallbackValue(payload)
    payload["answer"]["text"] = "changed"
    first = fb.as_payload()
    assert first == {"answer": {"text": "unknown"}}
    first["answer"]["text"] = "mine"
    assert fb.as_payload() == {"answer": {"text": "unknown"}}


def test_fallback_validation() -> None:
    with pytest.raises(ConfigError):
        FallbackValue(["x"])  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        FallbackCapability("")


def test_fallback_chains_are_fine_but_loops_are_not() -> None:
    chain = PolicySet(per_capability={
        "a": TaskPolicy(fallback=FallbackCapability("b")),
        "b": TaskPolicy(fallback=FallbackValue({"x": 1})),
    })
    assert isinstance(chain.for_task("a").fallback, FallbackCapability)
    with pytest.raises(ConfigError, match="loop: a -> b -> a$"):
        PolicySet(per_capability={"a": TaskPolicy(fallback=FallbackCapability("b")),
                                  "b": TaskPolicy(fallback=FallbackCapability("a"))})
    with pytest.raises(ConfigError, match="loop"):
        PolicySet(per_capability={"a": TaskPolicy(fallback=FallbackCapability("a"))})
    # A default falling back to "x" makes "x" fall back to itself unless x has its own policy.
    with pytest.raises(ConfigError, match="loop: x -> x$"):
        PolicySet(default=TaskPolicy(fallback=FallbackCapability("x")))
    PolicySet(default=TaskPolicy(fallback=FallbackCapability("x")),
              per_capability={"x": TaskPolicy()})


def test_policies_wire_into_the_breaker_registry_and_the_rate_limiter() -> None:
    p = PolicySet(per_agent_breaker={"llm": BreakerPolicy(2, 60.0)},
                  rate=RateLimitPolicy(global_rate=50.0, global_burst=10.0,
                                       per_agent={"llm": (1.0, 1.0)}))
    reg = BreakerRegistry(default=p.breaker, per_type=p.per_agent_breaker)
    assert reg.get("llm").failure_threshold == 2 and reg.get("x").failure_threshold == 5
    now = [0.0]
    lim = RateLimiter(global_rate=p.rate.global_rate, global_burst=p.rate.global_burst,
                      per_key=p.rate.per_agent, default_rate=p.rate.agent_rate,
                      default_burst=p.rate.agent_burst, clock=lambda: now[0])
    assert lim.try_acquire("llm") == 0.0
    assert lim.try_acquire("llm") == pytest.approx(1.0)
    assert lim.bucket("other").burst == 200.0
