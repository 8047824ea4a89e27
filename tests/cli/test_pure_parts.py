"""The pure parts behind the CLI: payload input, schema checks, tail filters and lines, AsyncAPI hoisting."""

import json

import msgspec
import pytest

from ledgerbus.cli.payloads import check_json_schema, read_payload
from ledgerbus.cli.stalls_cmd import human_ms
from ledgerbus.cli.tail_cmd import TailFilter, as_dict, line
from ledgerbus.errors import ConfigError, InvalidMessage
from ledgerbus.eventstore.base import Rejected, StoredEvent
from ledgerbus.agents.asyncapi import _Components, build
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import ErrorInfo, answer, new_request


def test_read_payload_sources(tmp_path, monkeypatch):
    assert read_payload('{"a": 1}') == {"a": 1}
    f = tmp_path / "p.json"
    f.write_text('{"b": [1, 2]}')
    assert read_payload(f"@{f}") == {"b": [1, 2]}
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO('{"c": null}'))
    assert read_payload("-") == {"c": None}
    with pytest.raises(InvalidMessage, match=r"not valid JSON: .* line 2 column 1"):
        read_payload('{"a":\n}')
    with pytest.raises(InvalidMessage, match="must be a JSON object, got list"):
        read_payload("[]")
    with pytest.raises(ConfigError, match="cannot read payload file"):
        read_payload(f"@{tmp_path / 'missing.json'}")


class Inner(msgspec.Struct):
    n: int


class Outer(msgspec.Struct):
    name: str
    inner: Inner
    tags: list[str] = []


def test_json_schema_errors_name_the_deepest_field_and_the_rule():
    schema = msgspec.json.schema(Outer)
    check_json_schema({"name": "x", "inner": {"n": 1}}, schema)
    with pytest.raises(InvalidMessage) as e:
        check_json_schema({"name": "x", "inner": {"n": "one"}}, schema)
    assert e.value.path == "$.payload.inner.n" and e.value.details["rule"] == "type"
    assert "`inner.n`" in e.value.reason and "`type`" in e.value.reason
    with pytest.raises(InvalidMessage) as e:
        check_json_schema({"inner": {"n": 1}}, schema)
    assert e.value.path == "$.payload.name" and e.value.details["rule"] == "required"
    with pytest.raises(InvalidMessage) as e:
        check_json_schema({"name": "x", "inner": {"n": 1}, "tags": [1]}, schema)
    assert e.value.path == "$.payload.tags[0]"


def test_tail_filter_and_lines():
    req = new_request(sender="orchestrator", recipient="research", capability="research.search",
                      payload={"topic": "[bold]not markup[/bold]"})
    err = answer(req, Action.ERROR, error=ErrorInfo(code="HANDLER_ERROR", message="boom"))
    ev, bad = StoredEvent(7, req), StoredEvent(8, err)
    assert TailFilter(agents=("research",)).matches(ev) and TailFilter(agents=("orchestrator",)).matches(bad)
    assert not TailFilter(actions=("ERROR",)).matches(ev) and TailFilter(actions=("ERROR",)).matches(bad)
    assert not TailFilter(conversations=("other",)).matches(ev)
    assert not TailFilter(capabilities=("writing.draft",)).matches(ev)
    text = line(ev)
    assert "orchestrator → research" in text and "REQUEST" in text and r"\[bold]" in text  # escaped, not styled
    assert "HANDLER_ERROR: boom" in line(bad)
    rej = Rejected(9, "lb.x.REQUEST.c", b"{", "INVALID_MESSAGE", "not JSON")
    assert "REJECTED" in line(rej) and TailFilter().matches(rej) and not TailFilter(actions=("ACK",)).matches(rej)
    assert as_dict(ev)["position"] == 7 and as_dict(rej)["rejected"] is True
    json.dumps(as_dict(bad))


def test_human_durations():
    assert (human_ms(1500), human_ms(61_000), human_ms(3_723_000)) == ("1.5s", "1m01s", "1h02m")


def test_hoisting_keeps_distinct_types_with_the_same_name_apart():
    comp = _Components()
    a = comp.hoist({"$ref": "#/$defs/Item", "$defs": {"Item": {"type": "object", "properties": {"a": {"type": "int"}}}}})
    again = comp.hoist({"$ref": "#/$defs/Item", "$defs": {"Item": {"type": "object", "properties": {"a": {"type": "int"}}}}})
    b = comp.hoist({"$ref": "#/$defs/Item", "$defs": {"Item": {"type": "object", "properties": {"b": {"type": "str"}}}}})
    assert a == again == {"$ref": "#/components/schemas/Item"}
    assert b == {"$ref": "#/components/schemas/Item_2"}
    assert set(comp.schemas) == {"Item", "Item_2"}


def test_asyncapi_of_no_agents_still_has_the_reply_channel():
    doc = build({}, prefix="acme")
    assert doc["channels"]["replies"]["address"] == "acme.{replyTo}.{action}.{conversationId}"
    assert doc["operations"] == {} and "servers" not in doc
