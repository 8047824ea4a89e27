"""A ledger written with payload version 1 replays through registered upcasters as version 2."""

from __future__ import annotations

from pathlib import Path

from ledgerbus.eventstore.fold import fold
from ledgerbus.eventstore.sqlite import SQLiteEventStore
from ledgerbus.eventstore.upcast import VERSION_KEY, Upcaster, stamp
from ledgerbus.schemas.capability import CapabilityRegistry
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import answer, new_request


def v1_ledger(path: Path) -> SQLiteEventStore:
    store = SQLiteEventStore(path)
    req = new_request(sender="client", recipient="greeter", capability="greet.say", payload={"name": "Ada"})
    store.append_envelopes([req, answer(req, Action.ACK),
                            answer(req, Action.RESPONSE, payload={"text": "hello Ada"})])
    return store


def v2_registry() -> CapabilityRegistry:
    reg = CapabilityRegistry()
    reg.register("greet.say", version=2)
    # v2 split the name and made the greeting structured.
    reg.add_upcaster("greet.say", "input", 1, lambda p: {"first": p["name"], "last": ""})
    reg.add_upcaster("greet.say", "output", 1, lambda p: {"greeting": p["text"], "lang": "en"})
    return reg


def test_v1_ledger_replays_as_v2(tmp_path):
    store = v1_ledger(tmp_path / "v1.db")
    up = Upcaster(v2_registry())
    state = fold(up.events(store.read()))
    task = state.root
    assert task is not None
    assert task.input == {"first": "Ada", "last": "", VERSION_KEY: 2}
    assert task.result == {"greeting": "hello Ada", "lang": "en", VERSION_KEY: 2}
    assert up.upcast == 2 and not up.problems
    # The ledger itself is untouched: its bytes and chain are what v1 wrote.
    assert b'"name":"Ada"' in next(iter(store.read())).raw and store.verify().ok
    store.close()


def test_current_version_payloads_pass_through(tmp_path):
    reg = v2_registry()
    req = new_request(sender="client", recipient="greeter", capability="greet.say",
                      payload=stamp({"first": "Bo", "last": "X"}, 2))
    up = Upcaster(reg)
    assert up.envelope(req) is req and up.upcast == 0


def test_missing_upcaster_is_a_reported_problem_not_a_crash(tmp_path):
    reg = CapabilityRegistry()
    reg.register("greet.say", version=3)
    reg.add_upcaster("greet.say", "input", 1, lambda p: p)  # no 2 -> 3 step
    store = v1_ledger(tmp_path / "v1.db")
    up = Upcaster(reg)
    events = list(up.events(store.read()))
    assert len(events) == 3
    assert [p.position for p in up.problems] == [1, 3]
    assert "no upcaster" in up.problems[0].message
    store.close()
