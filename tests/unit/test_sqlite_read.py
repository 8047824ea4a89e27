"""Trusted reads (replay) give the same envelopes and the same fold as validating reads, faster."""

from __future__ import annotations

import msgspec
from test_integrity import conversation

from ledgerbus.eventstore.fold import fold
from ledgerbus.eventstore.sqlite import SQLiteEventStore
from ledgerbus.schemas.envelope import Envelope


def test_trusted_read_matches_validating_read(tmp_path):
    store = SQLiteEventStore(tmp_path / "r.db")
    store.append_envelopes(conversation(3) + conversation(1))
    checked, trusted = list(store.read(batch=3)), list(store.read(batch=3, trusted=True))
    assert [e.position for e in checked] == [e.position for e in trusted]
    for a, b in zip(checked, trusted):
        assert isinstance(b.envelope, Envelope)
        assert msgspec.json.encode(b.envelope) == msgspec.json.encode(a.envelope) == a.raw == b.raw
    assert msgspec.to_builtins(fold(checked)) == msgspec.to_builtins(fold(trusted))
    store.close()
