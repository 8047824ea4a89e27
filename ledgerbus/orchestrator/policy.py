"""Failure-policy configuration, with the defaults of DESIGN.md ("Failure policy").

Everything is a frozen dataclass validated at construction, so a bad setting fails at start-up
with a ConfigError naming it, not mid-conversation.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from ledgerbus.errors import ConfigError
from ledgerbus.orchestrator.backoff import RetryPolicy

_V = TypeVar("_V")


def _positive(owner: str, name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{owner}.{name} must be a finite number > 0, got {value!r}")


def _frozen_map(owner: str, name: str, value: Mapping[str, Any], kind: type[_V]
                ) -> Mapping[str, _V]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{owner}.{name} must be a mapping, got {type(value).__name__}")
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"{owner}.{name}: keys must be non-empty strings, got {key!r}")
        if not isinstance(item, kind):
            raise ConfigError(f"{owner}.{name}[{key!r}] must be a {kind.__name__}, "
                              f"got {type(item).__name__}")
    # Read-only, so a policy shared by many conversations cannot be changed under them.
    return MappingProxyType(dict(value))


@dataclass(frozen=True)
class FallbackValue:
    """Answer a failed task with this payload instead."""

    payload: Mapping[str, Any]

    def __post_init__(self) -> None:
        if not isinstance(self.payload, Mapping):
            raise ConfigError(f"a fallback value must be a mapping (a payload), "
                              f"got {type(self.payload).__name__}")
        object.__setattr__(self, "payload", MappingProxyType(copy.deepcopy(dict(self.payload))))

    def as_payload(self) -> dict[str, Any]:
        """A fresh deep copy: each conversation may do what it likes with its own."""
        return copy.deepcopy(dict(self.payload))


@dataclass(frozen=True)
class FallbackCapability:
    """Ask this other capability when the task fails."""

    capability: str

    def __post_init__(self) -> None:
        if not isinstance(self.capability, str) or not self.capability:
            raise ConfigError(f"a fallback capability must be a non-empty string, "
                              f"got {self.capability!r}")


Fallback = FallbackValue | FallbackCapability


@dataclass(frozen=True)
class TaskPolicy:
    """Timeouts (seconds), retries and fallback of one task."""

    receipt_timeout: float = 2.0  # no ACK by then: the agent counts as unavailable
    stall_after: float = 10.0  # ACKed, then no PROGRESS/RESPONSE for this long: stalled
    timeout: float = 30.0  # no answer at all by then: timed out
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    fallback: Fallback | None = None

    def __post_init__(self) -> None:
        for name in ("receipt_timeout", "stall_after", "timeout"):
            _positive("TaskPolicy", name, getattr(self, name))
        if not isinstance(self.retry, RetryPolicy):
            raise ConfigError(f"TaskPolicy.retry must be a RetryPolicy, got {self.retry!r}")
        if self.fallback is not None and not isinstance(self.fallback,
                                                        (FallbackValue, FallbackCapability)):
            raise ConfigError("TaskPolicy.fallback must be a FallbackValue, a FallbackCapability "
                              f"or None, got {self.fallback!r}")


@dataclass(frozen=True)
class BreakerPolicy:
    """Circuit breaker of an agent type: opens after `failure_threshold` consecutive failures."""

    failure_threshold: int = 5
    reset_timeout: float = 30.0  # cool-down before one probe is let through

    def __post_init__(self) -> None:
        if isinstance(self.failure_threshold, bool) or not isinstance(self.failure_threshold, int) \
                or self.failure_threshold < 1:
            raise ConfigError("BreakerPolicy.failure_threshold must be an integer >= 1, "
                              f"got {self.failure_threshold!r}")
        _positive("BreakerPolicy", "reset_timeout", self.reset_timeout)


RateSpec = tuple[float | None, float]  # (tokens per second or None for unlimited, burst)


def _check_rate(owner: str, rate: float | None, burst: float) -> None:
    if rate is not None:
        _positive(owner, "rate", rate)
    if isinstance(burst, bool) or not isinstance(burst, (int, float)) \
            or not math.isfinite(burst) or burst < 1:
        raise ConfigError(f"{owner}: burst must be a finite number >= 1, got {burst!r}")


@dataclass(frozen=True)
class RateLimitPolicy:
    """Token buckets: a global one, and one per agent type (`per_agent` overrides the default).

    Shared by first attempts, retries, resumes and replays. A rate of None means unlimited.
    """

    global_rate: float | None = 200.0
    global_burst: float = 400.0
    agent_rate: float | None = 100.0
    agent_burst: float = 200.0
    per_agent: Mapping[str, RateSpec] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_rate("RateLimitPolicy.global", self.global_rate, self.global_burst)
        _check_rate("RateLimitPolicy.agent", self.agent_rate, self.agent_burst)
        frozen = _frozen_map("RateLimitPolicy", "per_agent", self.per_agent, tuple)
        for agent, spec in frozen.items():
            if len(spec) != 2:
                raise ConfigError(f"RateLimitPolicy.per_agent[{agent!r}] must be (rate, burst), "
                                  f"got {spec!r}")
            _check_rate(f"RateLimitPolicy.per_agent[{agent!r}]", *spec)
        object.__setattr__(self, "per_agent", frozen)

    def for_agent(self, agent_type: str) -> RateSpec:
        return self.per_agent.get(agent_type, (self.agent_rate, self.agent_burst))


@dataclass(frozen=True)
class PolicySet:
    """All failure policies of an orchestrator.

    Overrides replace the whole TaskPolicy (no field-by-field merge), so what applies to a task
    is always one object you can read in the configuration.
    """

    default: TaskPolicy = field(default_factory=TaskPolicy)
    per_capability: Mapping[str, TaskPolicy] = field(default_factory=dict)
    per_agent: Mapping[str, TaskPolicy] = field(default_factory=dict)
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    per_agent_breaker: Mapping[str, BreakerPolicy] = field(default_factory=dict)
    rate: RateLimitPolicy = field(default_factory=RateLimitPolicy)

    def __post_init__(self) -> None:
        if not isinstance(self.default, TaskPolicy):
            raise ConfigError(f"PolicySet.default must be a TaskPolicy, got {self.default!r}")
        if not isinstance(self.breaker, BreakerPolicy):
            raise ConfigError(f"PolicySet.breaker must be a BreakerPolicy, got {self.breaker!r}")
        if not isinstance(self.rate, RateLimitPolicy):
            raise ConfigError(f"PolicySet.rate must be a RateLimitPolicy, got {self.rate!r}")
        for name, kind in (("per_capability", TaskPolicy), ("per_agent", TaskPolicy),
                           ("per_agent_breaker", BreakerPolicy)):
            object.__setattr__(self, name, _frozen_map("PolicySet", name, getattr(self, name), kind))
        self._check_fallback_chains()

    def for_task(self, capability: str, agent_type: str | None = None) -> TaskPolicy:
        """The policy of a task: its capability's override, else its agent type's, else default."""
        policy = self.per_capability.get(capability)
        if policy is None and agent_type is not None:
            policy = self.per_agent.get(agent_type)
        return policy if policy is not None else self.default

    def breaker_for(self, agent_type: str) -> BreakerPolicy:
        return self.per_agent_breaker.get(agent_type, self.breaker)

    def _check_fallback_chains(self) -> None:
        # Falling back from a to b, whose own policy falls back to a, would never end.
        policies = [self.default, *self.per_capability.values(), *self.per_agent.values()]
        targets = [p.fallback.capability for p in policies
                   if isinstance(p.fallback, FallbackCapability)]
        for start in dict.fromkeys([*self.per_capability, *targets]):
            seen = [start]
            current = start
            while True:
                fallback = self.for_task(current).fallback
                if not isinstance(fallback, FallbackCapability):
                    break
                current = fallback.capability
                if current in seen:
                    chain = " -> ".join(seen + [current])
                    raise ConfigError(f"fallback capabilities loop: {chain}")
                seen.append(current)
