"""Circuit breakers, one per agent type: stop sending work to an agent type that keeps failing.

CLOSED --(failure_threshold consecutive failures)--> OPEN --(reset_timeout elapsed, allow())-->
HALF_OPEN with exactly one probe in flight --(probe succeeds)--> CLOSED
                                           --(probe fails)-----> OPEN (fresh cool-down)

Pure: time comes from an injectable clock, and every state change is reported to an optional
`on_transition(name, old, new)` callback so the orchestrator can write it into the ledger.
"""

from __future__ import annotations

import enum
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from ledgerbus.errors import ConfigError

Clock = Callable[[], float]
OnTransition = Callable[[str, "BreakerState", "BreakerState"], None]


class BreakerState(str, enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class Transition:
    """One state change, kept in `CircuitBreaker.transitions` for inspection and debugging."""

    name: str
    old: BreakerState
    new: BreakerState
    at: float  # clock reading when it happened


class CircuitBreaker:
    """The breaker of one agent type.

    Contract for callers: every `allow()` that returned True must eventually be followed by
    `record_success()`, `record_failure()` (a timeout counts as a failure) or, if the request was
    never sent, `release()`. Otherwise a half-open breaker waits for its probe forever.

    Outcomes reported while OPEN are ignored: they belong to requests sent before the breaker
    opened, and letting them close (or re-arm) it would defeat the cool-down. A late outcome
    arriving while HALF_OPEN cannot be told apart from the probe's and counts as the probe's.
    Not thread-safe: meant to be driven from one event loop.
    """

    def __init__(self, name: str, failure_threshold: int = 5, reset_timeout: float = 30.0,
                 clock: Clock = time.monotonic, on_transition: OnTransition | None = None,
                 history: int = 32) -> None:
        if not isinstance(failure_threshold, int) or failure_threshold < 1:
            raise ConfigError(f"breaker {name!r}: failure_threshold must be an integer >= 1, "
                              f"got {failure_threshold!r}")
        if not (math.isfinite(reset_timeout) and reset_timeout >= 0):
            raise ConfigError(f"breaker {name!r}: reset_timeout must be a finite number >= 0, "
                              f"got {reset_timeout!r}")
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._on_transition = on_transition
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False
        # Bounded so a long-running orchestrator does not accumulate history; the ledger
        # (through on_transition) is the durable record.
        self._transitions: deque[Transition] = deque(maxlen=max(history, 0))

    @property
    def state(self) -> BreakerState:
        """The current state. Reading it never changes it: OPEN becomes HALF_OPEN in `allow()`."""
        return self._state

    @property
    def failures(self) -> int:
        """Consecutive failures counted while CLOSED."""
        return self._failures

    @property
    def probe_in_flight(self) -> bool:
        return self._probe_in_flight

    @property
    def transitions(self) -> tuple[Transition, ...]:
        """The most recent state changes, oldest first."""
        return tuple(self._transitions)

    def allow(self) -> bool:
        """Whether a request may be sent to this agent type now (and, if half-open, take the probe)."""
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.OPEN:
            if self._clock() - self._opened_at < self.reset_timeout:
                return False
            self._move(BreakerState.HALF_OPEN)
        if self._probe_in_flight:
            return False
        self._probe_in_flight = True
        return True

    def release(self) -> None:
        """Give back a probe slot taken by `allow()` for a request that was never sent."""
        self._probe_in_flight = False

    def record_success(self) -> None:
        if self._state is BreakerState.OPEN:
            return
        self._failures = 0
        self._probe_in_flight = False
        if self._state is BreakerState.HALF_OPEN:
            self._move(BreakerState.CLOSED)

    def record_failure(self) -> None:
        if self._state is BreakerState.OPEN:
            return
        if self._state is BreakerState.HALF_OPEN:
            self._open()
            return
        self._failures += 1
        if self._failures >= self.failure_threshold:
            self._open()

    def retry_after(self) -> float:
        """Seconds until `allow()` may return True; 0 if it would now.

        While a half-open probe is in flight the answer depends on the probe, so this returns
        one cool-down as an upper bound on when re-checking is worthwhile.
        """
        if self._state is BreakerState.CLOSED:
            return 0.0
        if self._state is BreakerState.OPEN:
            return max(0.0, self._opened_at + self.reset_timeout - self._clock())
        return self.reset_timeout if self._probe_in_flight else 0.0

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._probe_in_flight = False
        self._failures = 0
        self._move(BreakerState.OPEN)

    def _move(self, new: BreakerState) -> None:
        old = self._state
        if old is new:
            return
        self._state = new
        self._transitions.append(Transition(self.name, old, new, self._clock()))
        # State is changed first, so a callback that raises leaves the breaker consistent;
        # its exception still reaches the caller rather than being swallowed.
        if self._on_transition is not None:
            self._on_transition(self.name, old, new)

    def __repr__(self) -> str:
        return (f"CircuitBreaker({self.name!r}, state={self._state.value}, "
                f"failures={self._failures}/{self.failure_threshold})")


class BreakerSettings(Protocol):
    """What the registry needs from a per-type setting; `policy.BreakerPolicy` fits."""

    @property
    def failure_threshold(self) -> int: ...

    @property
    def reset_timeout(self) -> float: ...


class BreakerRegistry:
    """Agent type -> its breaker, created on first use with that type's settings."""

    def __init__(self, default: BreakerSettings | None = None,
                 per_type: Mapping[str, BreakerSettings] | None = None,
                 clock: Clock = time.monotonic,
                 on_transition: OnTransition | None = None) -> None:
        self._default = default
        self._per_type = dict(per_type or {})
        self._clock = clock
        self._on_transition = on_transition
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, agent_type: str) -> CircuitBreaker:
        breaker = self._breakers.get(agent_type)
        if breaker is None:
            settings = self._per_type.get(agent_type, self._default)
            if settings is None:
                breaker = CircuitBreaker(agent_type, clock=self._clock,
                                         on_transition=self._on_transition)
            else:
                breaker = CircuitBreaker(agent_type, settings.failure_threshold,
                                         settings.reset_timeout, clock=self._clock,
                                         on_transition=self._on_transition)
            self._breakers[agent_type] = breaker
        return breaker

    __getitem__ = get

    def __contains__(self, agent_type: object) -> bool:
        return agent_type in self._breakers

    def __len__(self) -> int:
        return len(self._breakers)

    def states(self) -> dict[str, BreakerState]:
        """Snapshot of every breaker created so far, e.g. for `ledgerbus status`."""
        return {name: b.state for name, b in self._breakers.items()}
