"""The observer's side of a conductor lease: pure, on the observer's own clock."""

from ledgerbus.orchestrator.conductors import LeaseWatch


def test_a_claim_expires_only_after_one_revision_stayed_unchanged_for_a_whole_lease():
    watch = LeaseWatch()
    assert not watch.expired(1.0, 100.0)  # nothing seen yet
    assert watch.observe(5, 100.0) is False  # first look: no movement to speak of
    assert not watch.expired(1.0, 100.9)
    assert watch.observe(5, 100.9) is False
    assert watch.expired(1.0, 101.0)


def test_a_renewal_restarts_the_observers_count():
    watch = LeaseWatch()
    watch.observe(5, 100.0)
    assert watch.observe(6, 100.8) is True  # the holder renewed: alive
    assert not watch.expired(1.0, 101.5)
    assert watch.expired(1.0, 101.8)
