from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledgerbus.errors import ConfigError
from ledgerbus.eventstore.fold import ConversationStatus
from ledgerbus.orchestrator.aggregate import (
    All,
    AnyOf,
    BestEffort,
    Decision,
    FanIn,
    Outcome,
    Quorum,
    parse_fan_in,
)

S, F, W = Decision.SATISFIED, Decision.FAILED, Decision.WAITING


@pytest.mark.parametrize("policy,counts,expected", [
    (All(), (0, 0, 3), W), (All(), (2, 0, 1), W), (All(), (3, 0, 0), S),
    (All(), (1, 1, 1), F), (All(), (0, 0, 0), S),
    (AnyOf(), (0, 0, 3), W), (AnyOf(), (0, 2, 1), W), (AnyOf(), (1, 2, 0), S),
    (AnyOf(), (1, 0, 5), S), (AnyOf(), (0, 3, 0), F), (AnyOf(), (0, 0, 0), F),
    (Quorum(2), (1, 0, 2), W), (Quorum(2), (2, 0, 1), S), (Quorum(2), (1, 2, 0), F),
    (Quorum(2), (0, 2, 1), F), (Quorum(2), (1, 1, 1), W), (Quorum(5), (0, 0, 3), F),
    (BestEffort(), (2, 0, 1), W), (BestEffort(), (1, 2, 0), S), (BestEffort(), (3, 0, 0), S),
    (BestEffort(), (0, 3, 0), F), (BestEffort(), (0, 0, 0), F),
])
def test_decisions(policy: FanIn, counts: tuple[int, int, int], expected: Decision) -> None:
    assert policy.decide(*counts) is expected


def test_every_policy_is_a_fan_in() -> None:
    for policy in (All(), AnyOf(), Quorum(1), BestEffort()):
        assert isinstance(policy, FanIn)


@pytest.mark.parametrize("k", [0, -1, 1.5])
def test_quorum_needs_a_positive_integer(k: object) -> None:
    with pytest.raises(ConfigError):
        Quorum(k)  # type: ignore[arg-type]


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError):
        All().decide(-1, 0, 0)


def test_outcome_values() -> None:
    # One status type: a conversation's outcome is the fold's status of it, once it has ended.
    assert Outcome is ConversationStatus
    assert [o.value for o in Outcome if o is not ConversationStatus.RUNNING] == ["DONE", "DEGRADED", "FAILED"]


@pytest.mark.parametrize("spec,expected", [
    ("all", All()), ("ANY", AnyOf()), (" best_effort ", BestEffort()), ("quorum:3", Quorum(3)),
])
def test_parse_fan_in(spec: str, expected: FanIn) -> None:
    assert parse_fan_in(spec) == expected


@pytest.mark.parametrize("spec", ["most", "quorum", "quorum:x", "quorum:0", ""])
def test_parse_fan_in_refuses_nonsense(spec: str) -> None:
    with pytest.raises(ConfigError):
        parse_fan_in(spec)


policies = st.one_of(st.just(All()), st.just(AnyOf()), st.just(BestEffort()),
                     st.integers(min_value=1, max_value=12).map(Quorum))


@given(policies, st.lists(st.booleans(), max_size=12))
def test_decisions_are_monotone_and_final(policy: FanIn, results: list[bool]) -> None:
    # Members settle one by one (True = success); a decision, once reached, must not change.
    succeeded = failed = 0
    pending = len(results)
    decided = None
    for ok in [None, *results]:
        if ok is not None:
            pending -= 1
            succeeded, failed = succeeded + ok, failed + (not ok)
        d = policy.decide(succeeded, failed, pending)
        if decided is not None:
            assert d is decided
        elif d is not W:
            decided = d
    assert policy.decide(succeeded, failed, 0) is not W  # nothing pending: always decided


@given(st.integers(min_value=1, max_value=10), st.integers(min_value=0, max_value=10),
       st.integers(min_value=0, max_value=10), st.integers(min_value=0, max_value=10))
def test_quorum_matches_its_definition(k: int, s: int, f: int, p: int) -> None:
    d = Quorum(k).decide(s, f, p)
    assert (d is S) == (s >= k)
    assert (d is F) == (s + p < k)
