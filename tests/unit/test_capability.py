"""Capabilities: msgspec Structs and pydantic models validate, dump and export schemas the same way."""

from __future__ import annotations

import datetime
import decimal
import enum
import uuid
from typing import Annotated, Any

import msgspec
import pydantic
import pytest
from jsonschema import Draft202012Validator
from pydantic.alias_generators import to_camel

from ledgerbus.errors import ConfigError, InvalidMessage, LedgerbusError, UnknownCapability
from ledgerbus.schemas import export
from ledgerbus.schemas.capability import CapabilityRegistry, PayloadType


class Tone(str, enum.Enum):
    PLAIN = "plain"
    FORMAL = "formal"


# The same contract written twice: once as msgspec Structs, once as pydantic models.

class MNote(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    note_text: Annotated[str, msgspec.Meta(min_length=1)]
    score: Annotated[float, msgspec.Meta(ge=0)] = 0.0


class MQuery(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    topic: Annotated[str, msgspec.Meta(min_length=1, max_length=20)]
    max_notes: Annotated[int, msgspec.Meta(ge=1, le=5)] = 3
    tone: Tone = Tone.PLAIN
    notes: list[MNote] = []


class _Camel(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class PNote(_Camel):
    note_text: str = pydantic.Field(min_length=1)
    score: float = pydantic.Field(default=0.0, ge=0)


class PQuery(_Camel):
    topic: str = pydantic.Field(min_length=1, max_length=20)
    max_notes: int = pydantic.Field(default=3, ge=1, le=5)
    tone: Tone = Tone.PLAIN
    notes: list[PNote] = []


KINDS = [pytest.param(MQuery, id="msgspec"), pytest.param(PQuery, id="pydantic")]

GOOD: list[dict[str, Any]] = [
    {"topic": "bees"},
    {"topic": "bees", "maxNotes": 5, "tone": "formal"},
    {"topic": "b", "notes": [{"noteText": "x"}, {"noteText": "y", "score": 2}]},
    {"topic": "b", "notes": [{"noteText": "y", "score": 1.5}]},
]

# (payload, the path the error must name, a word of the rule)
BAD: list[tuple[Any, str, str]] = [
    ({}, "$.payload.topic", "required"),
    ({"topic": ""}, "$.payload.topic", "1"),
    ({"topic": "x" * 21}, "$.payload.topic", "20"),
    ({"topic": "a", "maxNotes": 0}, "$.payload.maxNotes", "1"),
    ({"topic": "a", "maxNotes": 6}, "$.payload.maxNotes", "5"),
    ({"topic": "a", "maxNotes": "3"}, "$.payload.maxNotes", "int"),  # no string-to-int coercion in either
    ({"topic": "a", "maxNotes": True}, "$.payload.maxNotes", "int"),
    ({"topic": "a", "tone": "angry"}, "$.payload.tone", ""),
    ({"topic": "a", "tpoic": "typo"}, "$.payload.tpoic", ""),
    ({"topic": "a", "notes": [{"noteText": "ok"}, {"noteText": ""}]}, "$.payload.notes[1].noteText", "1"),
    ({"topic": "a", "notes": [{"noteText": "ok", "score": -1}]}, "$.payload.notes[0].score", "0"),
    ({"topic": "a", "notes": [{}]}, "$.payload.notes[0].noteText", "required"),
    ({"topic": "a", "notes": "many"}, "$.payload.notes", ""),
    ([1, 2], "$.payload", "object"),
]


def _reg(tp: Any) -> CapabilityRegistry:
    reg = CapabilityRegistry()
    reg.register("notes.find", tp, tp)
    return reg


@pytest.mark.parametrize("tp", KINDS)
@pytest.mark.parametrize("payload", GOOD)
def test_valid_payloads_validate_and_dump_back(tp: Any, payload: dict[str, Any]) -> None:
    cap = _reg(tp).get("notes.find")
    value = cap.validate_input(payload)
    assert isinstance(value, tp)
    dumped = cap.input.dump(value)
    assert msgspec.json.decode(msgspec.json.encode(dumped)) == dumped  # JSON-ready
    expected = {**payload, "notes": [{"score": 0.0, **n} for n in payload.get("notes", [])]}
    assert {k: dumped[k] for k in expected} == expected
    assert cap.validate_input(dumped) == value  # dump ∘ validate is stable


def test_both_kinds_dump_the_same_wire_form() -> None:
    for payload in GOOD:
        m = PayloadType(MQuery)
        p = PayloadType(PQuery)
        assert m.dump(m.validate(payload)) == p.dump(p.validate(payload))


@pytest.mark.parametrize("tp", KINDS)
@pytest.mark.parametrize(("payload", "path", "word"), BAD)
def test_invalid_payload_names_the_field_and_the_rule(tp: Any, payload: Any, path: str, word: str) -> None:
    cap = _reg(tp).get("notes.find")
    with pytest.raises(InvalidMessage) as info:
        cap.validate_input(payload)
    exc = info.value
    assert isinstance(exc, LedgerbusError)
    assert exc.code == "INVALID_MESSAGE"
    assert exc.path == path
    assert f"`{path}`" in exc.reason
    assert word.lower() in exc.reason.lower()
    # The same payload as a handler's output is the agent's fault, not the requester's.
    with pytest.raises(InvalidMessage) as out:
        cap.validate_output(payload)
    assert out.value.code == "INVALID_OUTPUT"
    assert out.value.path == path


@pytest.mark.parametrize("tp", KINDS)
def test_exported_schema_agrees_with_validation(tp: Any) -> None:
    """The JSON Schema a non-Python agent reads accepts and refuses what the Python validator does."""
    docs = export.build(_reg(tp))
    schema = docs["notes.find.input.schema.json"]
    Draft202012Validator.check_schema(schema)
    assert export.version_of(schema) == 1
    validator = Draft202012Validator(schema)
    for payload in GOOD:
        assert not list(validator.iter_errors(payload)), payload
    for payload, _, _ in BAD:
        assert list(validator.iter_errors(payload)), payload


@pytest.mark.parametrize("tp", KINDS)
def test_exported_schema_uses_wire_names(tp: Any) -> None:
    text = export.render(export.build(_reg(tp))["notes.find.output.schema.json"])
    assert '"maxNotes"' in text and '"noteText"' in text
    assert "max_notes" not in text and "note_text" not in text


def test_untyped_capability_takes_any_object() -> None:
    cap = CapabilityRegistry().register("free.form")
    assert cap.validate_input({"anything": [1, {"x": None}]}) == {"anything": [1, {"x": None}]}
    with pytest.raises(InvalidMessage) as info:
        cap.validate_input(["not", "an", "object"])
    assert info.value.path == "$.payload"
    assert cap.input.json_schema() == {"type": "object"}


def test_dump_refuses_a_non_object() -> None:
    with pytest.raises(InvalidMessage) as info:
        PayloadType(list[int]).dump([1, 2])
    assert info.value.code == "INVALID_OUTPUT"


# -- registry -----------------------------------------------------------------------------------

def test_unknown_capability_is_a_clear_error() -> None:
    reg = _reg(MQuery)
    with pytest.raises(UnknownCapability) as info:
        reg.get("notes.lost")
    assert (info.value.code, info.value.path, info.value.capability) == ("UNKNOWN_CAPABILITY", "$.capability", "notes.lost")
    assert "notes.lost" in str(info.value)
    assert reg.find("notes.lost") is None
    assert "notes.find" in reg and "notes.lost" not in reg


def test_registering_twice_is_idempotent_but_conflicts_fail() -> None:
    reg = CapabilityRegistry()
    first = reg.register("notes.find", MQuery, MNote)
    assert reg.register("notes.find", MQuery, MNote) is first
    with pytest.raises(ConfigError, match="notes.find"):
        reg.register("notes.find", PQuery, MNote)
    with pytest.raises(ConfigError):
        reg.register("notes.find", MQuery, MNote, version=2)
    replaced = reg.register("notes.find", PQuery, PNote, version=2, replace=True)
    assert reg.get("notes.find") is replaced and replaced.version == 2
    assert len(reg) == 1


def test_iteration_is_sorted_by_name() -> None:
    reg = CapabilityRegistry()
    for name in ("b.x", "a.y", "c.z", "a.b"):
        reg.register(name)
    assert [c.name for c in reg] == ["a.b", "a.y", "b.x", "c.z"]


# -- versions and upcasters ---------------------------------------------------------------------

def _versioned() -> CapabilityRegistry:
    reg = CapabilityRegistry()
    reg.register("notes.find", MQuery, MQuery, version=3)
    # v1 called the field "subject"; v2 had "limit"; v3 is MQuery.
    reg.add_upcaster("notes.find", "input", 1, lambda p: {"topic": p["subject"], "limit": p.get("limit", 3)})
    reg.add_upcaster("notes.find", "input", 2, lambda p: {"topic": p["topic"], "maxNotes": p["limit"]})
    return reg


def test_upcasters_chain_to_the_current_version() -> None:
    cap = _versioned().get("notes.find")
    assert cap.upcast("input", {"subject": "bees"}, 1) == {"topic": "bees", "maxNotes": 3}
    assert cap.upcast("input", {"topic": "bees", "limit": 2}, 2) == {"topic": "bees", "maxNotes": 2}
    current = {"topic": "bees", "maxNotes": 4}
    assert cap.upcast("input", current, 3) is current
    assert cap.validate_input(cap.upcast("input", {"subject": "bees"}, 1)) == MQuery(topic="bees", max_notes=3)


def test_a_missing_upcaster_is_named() -> None:
    cap = _versioned().get("notes.find")
    with pytest.raises(InvalidMessage, match=r"output v1 → v2") as info:
        cap.upcast("output", {"subject": "bees"}, 1)  # only inputs have upcasters
    assert info.value.code == "INVALID_MESSAGE"


def test_a_payload_newer_than_the_code_is_refused() -> None:
    cap = _versioned().get("notes.find")
    with pytest.raises(InvalidMessage, match="newer"):
        cap.upcast("input", {"topic": "bees"}, 4)


def test_upcaster_for_an_unknown_capability_fails() -> None:
    with pytest.raises(UnknownCapability):
        CapabilityRegistry().add_upcaster("nope.x", "input", 1, lambda p: p)


def test_schema_files_carry_the_version() -> None:
    docs = export.build(_versioned())
    assert export.version_of(docs["notes.find.input.schema.json"]) == 3
    assert export.version_of(docs["notes.find.output.schema.json"]) == 3
    assert docs["notes.find.input.schema.json"]["$comment"] == "ledgerbus capability notes.find input, version 3"
    assert docs["notes.find.input.schema.json"]["title"] == "notes.find input (v3)"


# -- rich types survive dump → JSON → validate (strict validation must not refuse what dump wrote) ------

class MRich(msgspec.Struct):
    when: datetime.datetime
    day: datetime.date
    ref: uuid.UUID
    tone: Tone
    pair: tuple[int, int]
    tags: set[str]
    ratio: float


class PRich(pydantic.BaseModel):
    when: datetime.datetime
    day: datetime.date
    ref: uuid.UUID
    tone: Tone
    pair: tuple[int, int]
    tags: set[str]
    ratio: float
    amount: decimal.Decimal


RICH = {
    "when": datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
    "day": datetime.date(2026, 1, 2), "ref": uuid.UUID(int=7), "tone": Tone.FORMAL,
    "pair": (1, 2), "tags": {"a", "b"}, "ratio": 1,
}


@pytest.mark.parametrize(("tp", "extra"), [(MRich, {}), (PRich, {"amount": decimal.Decimal("1.50")})],
                         ids=["msgspec", "pydantic"])
def test_rich_types_round_trip_through_the_wire(tp: Any, extra: dict[str, Any]) -> None:
    pt = PayloadType(tp)
    value = tp(**RICH, **extra)
    wire = msgspec.json.decode(msgspec.json.encode(pt.dump(value)))  # what the other side receives
    assert pt.validate(wire) == value
    assert not list(Draft202012Validator(pt.json_schema()).iter_errors(wire))
