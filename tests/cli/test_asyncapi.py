"""The AsyncAPI document validates against the official AsyncAPI 3.0 JSON Schema (vendored from the npm
package @asyncapi/specs 6.11.1, tests/fixtures/asyncapi/), and every reference in it resolves."""

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from ledgerbus.agents.asyncapi import build, from_agents

OFFICIAL = Path(__file__).parent.parent / "fixtures" / "asyncapi" / "asyncapi-3.0.0.schema.json"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(OFFICIAL.read_text())
    assert schema["$id"] == "http://asyncapi.com/definitions/3.0.0/asyncapi.json"
    return jsonschema.Draft7Validator(schema)


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def resolve(doc: dict, ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def assert_valid(doc: dict, validator: jsonschema.Draft7Validator) -> None:
    errors = sorted(validator.iter_errors(doc), key=lambda e: e.json_path)
    assert not errors, "\n".join(f"{e.json_path}: {e.message[:200]}" for e in errors[:5])
    for ref in refs(doc):
        resolve(doc, ref)  # KeyError if it points nowhere


def test_document_of_the_example_agents_is_valid(cli, validator, tmp_path):
    out = tmp_path / "asyncapi.json"
    r = cli("asyncapi", "-o", str(out), "--server", "127.0.0.1:4222", server=False)
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert_valid(doc, validator)
    assert doc["asyncapi"] == "3.0.0"
    assert doc["channels"]["research.requests"]["address"] == "lb.research.REQUEST.{conversationId}"
    assert doc["channels"]["replies"]["address"] == "lb.{replyTo}.{action}.{conversationId}"
    op = doc["operations"]["research.research.search"]
    assert op["action"] == "receive"
    req = resolve(doc, resolve(doc, op["messages"][0]["$ref"])["$ref"])
    payload = req["payload"]["allOf"][1]["properties"]["payload"]
    topic = resolve(doc, payload["$ref"])["properties"]["topic"]
    assert topic["type"] == "string"  # the capability's own schema, hoisted into components
    assert doc["servers"]["ledgerbus"]["protocol"] == "nats"


def test_the_official_schema_rejects_a_broken_document(validator):
    import ledgerbus.examples as ex

    doc = build(from_agents(ex.AGENTS))
    assert not list(validator.iter_errors(doc))
    doc["operations"]["research.research.search"]["action"] = "fly"
    del doc["info"]
    assert len(list(validator.iter_errors(doc))) >= 2


def test_user_agent_and_live_deployment(cli, examples, validator, tmp_path, monkeypatch):
    (tmp_path / "myagents.py").write_text(
        "import msgspec\nfrom ledgerbus import Agent, CapabilityRegistry\n"
        "class Q(msgspec.Struct):\n    text: str\n"
        "agent = Agent('echo', registry=CapabilityRegistry())\n"
        "@agent.capability('echo.say')\nasync def say(q: Q, ctx) -> Q:\n    return q\n")
    monkeypatch.chdir(tmp_path)
    user = cli("asyncapi", "--agent", "myagents:agent", "--prefix", "acme", server=False)
    assert user.exit_code == 0, user.output
    doc = json.loads(user.stdout)
    assert_valid(doc, validator)
    assert set(doc["operations"]) == {"echo.echo.say"}
    assert doc["channels"]["echo.requests"]["address"] == "acme.echo.REQUEST.{conversationId}"

    live = cli("asyncapi", "--live")
    assert live.exit_code == 0, live.output
    doc = json.loads(live.stdout)
    assert_valid(doc, validator)
    assert set(doc["operations"]) == {"research.research.search", "writing.writing.draft", "editor.editor.edit"}
    assert doc["servers"]["ledgerbus"]["host"].startswith("127.0.0.1:")

    bad = cli("asyncapi", "--agent", "myagents:nothing", server=False)
    assert bad.exit_code == 1 and "is not a ledgerbus Agent" in bad.stderr and "agents in myagents: agent" in bad.stderr
