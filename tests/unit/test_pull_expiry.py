"""A pull request expires at the server clearly before its fetch gives up, so its 408 ends that fetch."""

from __future__ import annotations

import pytest

from ledgerbus.bus._nats.pulls import pull_expiry


@pytest.mark.parametrize("timeout", [0.05, 0.3, 1.0, 2.0, 5.0, 30.0])
def test_the_server_expires_a_pull_well_inside_the_fetch_timeout(timeout: float) -> None:
    expiry = pull_expiry(timeout)
    assert timeout / 2 <= expiry < timeout
    # Far more than the 100 µs nats-py leaves: a loaded event loop or a busy server takes milliseconds.
    assert timeout - expiry >= min(0.2, timeout / 4) - 1e-9


def test_a_long_fetch_keeps_most_of_its_wait() -> None:
    assert pull_expiry(30.0) == pytest.approx(29.8)
    assert pull_expiry(1.0) == pytest.approx(0.8)
