"""The Agents page's breakers, rebuilt by feeding the orchestrator's CircuitBreaker the ledger's outcomes."""

from __future__ import annotations

import pytest

from ledgerbus.orchestrator.breaker import BreakerState
from ledgerbus.orchestrator.policy import BreakerPolicy
from ledgerbus.ui.agentview import Row, replay

POLICY = BreakerPolicy(failure_threshold=2, reset_timeout=10.0)


def _attempt(pos: int, ts: int, attempt: int, answer: str, code: str | None = None) -> list[Row]:
    req = Row(pos, ts, "c1", "orchestrator", "a", "REQUEST", "t_step", attempt, None)
    sender = "a" if code not in ("STALLED", "NO_RECEIPT") else "orchestrator"
    return [req, Row(pos + 1, ts + 5, "c1", sender, "orchestrator", answer, "t_step", attempt, code)]


def test_two_faults_open_it_and_a_probe_after_the_cool_down_closes_it() -> None:
    rows = _attempt(1, 1_000, 1, "ERROR", "HANDLER_ERROR") + _attempt(3, 2_000, 2, "ERROR", "STALLED")
    opened = replay(rows, 5_000, lambda agent: POLICY)["a"]
    assert opened.breaker.state is BreakerState.OPEN and opened.breaker.retry_after_s == pytest.approx(7.005)
    assert [m.code for m in opened.errors] == ["HANDLER_ERROR"] and [m.code for m in opened.stalls] == ["STALLED"]
    # The next REQUEST, once the cool-down is over, is the probe; its RESPONSE closes the breaker.
    probe = _attempt(5, 13_000, 3, "RESPONSE")
    assert replay(rows + probe, 14_000, lambda agent: POLICY)["a"].breaker.state is BreakerState.CLOSED
    # A request's own fault (bad input) is not the agent's: it does not count.
    bad = _attempt(1, 1_000, 1, "ERROR", "INVALID_MESSAGE") + _attempt(3, 2_000, 2, "ERROR", "INVALID_MESSAGE")
    assert replay(bad, 5_000, lambda agent: POLICY)["a"].breaker.state is BreakerState.CLOSED
