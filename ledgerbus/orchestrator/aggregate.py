"""Fan-in: deciding when a group of parallel step outcomes is good enough, or hopeless.

Each policy maps the group's counts (succeeded, failed, pending) to a Decision. Decisions are
monotone: once SATISFIED or FAILED, settling more pending members never changes the answer, so
the orchestrator may act (and cancel the stragglers) on the first decisive count.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ledgerbus.errors import ConfigError
from ledgerbus.eventstore.fold import ConversationStatus


class Decision(str, enum.Enum):
    SATISFIED = "SATISFIED"
    FAILED = "FAILED"
    WAITING = "WAITING"


#: How a conversation ended: DONE (everything succeeded), DEGRADED (finished with partial results:
#: optional failures or fallbacks used) or FAILED (a required part failed and no fallback covered it).
#: The fold's status of a conversation, under the name plans and older callers use.
Outcome = ConversationStatus


def _check_counts(succeeded: int, failed: int, pending: int) -> None:
    if succeeded < 0 or failed < 0 or pending < 0:
        raise ValueError(f"counts must be >= 0, got succeeded={succeeded}, "
                         f"failed={failed}, pending={pending}")


@runtime_checkable
class FanIn(Protocol):
    def decide(self, succeeded: int, failed: int, pending: int) -> Decision: ...


@dataclass(frozen=True)
class All:
    """Every member must succeed: FAILED at the first failure. An empty group is SATISFIED."""

    def decide(self, succeeded: int, failed: int, pending: int) -> Decision:
        _check_counts(succeeded, failed, pending)
        if failed:
            return Decision.FAILED
        return Decision.WAITING if pending else Decision.SATISFIED


@dataclass(frozen=True)
class AnyOf:
    """One success is enough: SATISFIED at the first one, FAILED when all failed (or none exist)."""

    def decide(self, succeeded: int, failed: int, pending: int) -> Decision:
        _check_counts(succeeded, failed, pending)
        if succeeded:
            return Decision.SATISFIED
        return Decision.WAITING if pending else Decision.FAILED


@dataclass(frozen=True)
class Quorum:
    """At least `k` successes: SATISFIED at the k-th, FAILED once k is out of reach."""

    k: int

    def __post_init__(self) -> None:
        if not isinstance(self.k, int) or self.k < 1:
            raise ConfigError(f"quorum k must be an integer >= 1, got {self.k!r}")

    def decide(self, succeeded: int, failed: int, pending: int) -> Decision:
        _check_counts(succeeded, failed, pending)
        if succeeded >= self.k:
            return Decision.SATISFIED
        if succeeded + pending < self.k:
            return Decision.FAILED
        return Decision.WAITING


@dataclass(frozen=True)
class BestEffort:
    """Wait for every member, then take whatever succeeded.

    SATISFIED when nothing is pending and at least one member succeeded. With zero successes
    (including an empty group) the result is FAILED: there is nothing to aggregate, and calling
    that success would hide a total outage. Partial success is the orchestrator's cue to end the
    conversation DEGRADED rather than DONE.
    """

    def decide(self, succeeded: int, failed: int, pending: int) -> Decision:
        _check_counts(succeeded, failed, pending)
        if pending:
            return Decision.WAITING
        return Decision.SATISFIED if succeeded else Decision.FAILED


def parse_fan_in(spec: str) -> FanIn:
    """From configuration text: "all", "any", "best_effort" or "quorum:<k>"."""
    text = spec.strip().lower()
    simple: dict[str, FanIn] = {"all": All(), "any": AnyOf(), "best_effort": BestEffort()}
    if text in simple:
        return simple[text]
    name, _, k = text.partition(":")
    if name == "quorum" and k.strip().isdigit():
        return Quorum(int(k))
    raise ConfigError(f"unknown fan-in {spec!r}: expected all, any, best_effort or quorum:<k>")
