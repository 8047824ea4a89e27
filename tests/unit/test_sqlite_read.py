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


def _patterns(t: msgspec.inspect.Type) -> list[str]:
    """Every string pattern a decoder of type `t` checks, nested types included."""
    if isinstance(t, msgspec.inspect.StrType):
        return [t.pattern] if t.pattern else []
    if isinstance(t, msgspec.inspect.UnionType):
        return [p for member in t.types for p in _patterns(member)]
    if isinstance(t, msgspec.inspect.StructType):
        return [p for f in t.fields for p in _patterns(f.type)]
    return []


def test_a_trusted_read_checks_no_patterns_where_a_validating_read_does():
    from ledgerbus.eventstore.sqlite import StoredEnvelope

    # A pattern left on the trusted type runs a regex per event on every replay (one did: causation_id).
    assert _patterns(msgspec.inspect.type_info(Envelope))
    assert _patterns(msgspec.inspect.type_info(StoredEnvelope)) == []
    assert StoredEnvelope.__struct_fields__ == Envelope.__struct_fields__
