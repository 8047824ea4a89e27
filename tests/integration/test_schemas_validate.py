"""The checked-in JSON Schemas validate real envelopes from a real ledger, with a standard validator.

Real conversations (the three example agents, the orchestrator and the recorder on a real nats-server)
are read back from the SQLite ledger as the exact wire bytes, and each is checked with jsonschema's
Draft202012Validator against the files in `schemas/` — never against the code that generated them.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from ledgerbus.examples import AGENTS, ARTICLE, ContentPipeline, register
from ledgerbus.agents.runtime import AgentRuntime
from ledgerbus.bus.connection import Bus
from ledgerbus.bus.requester import Requester
from ledgerbus.eventstore.base import EventFilter, StoredEvent
from ledgerbus.eventstore.fold import ConversationState, fold
from ledgerbus.eventstore.recorder import Recorder
from ledgerbus.eventstore.sqlite import SQLiteEventStore
from ledgerbus.orchestrator.backoff import Backoff, RetryPolicy
from ledgerbus.orchestrator.engine import Orchestrator
from ledgerbus.orchestrator.inflight import ConversationResult
from ledgerbus.orchestrator.policy import FallbackValue, PolicySet, TaskPolicy
from ledgerbus.schemas.envelope import new_request

register()  # the orchestrator validates step inputs against the examples' capabilities

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def validator(name: str) -> Draft202012Validator:
    doc = json.loads((SCHEMAS / name).read_text())
    Draft202012Validator.check_schema(doc)
    return Draft202012Validator(doc)


ENVELOPE = validator("envelope.schema.json")
ENVELOPE_EXAMPLE = json.dumps({
    "id": "e1", "conversationId": "c1", "taskId": "t1", "sender": "tester", "recipient": "nobody",
    "action": "REQUEST", "capability": "x.y", "payload": {}, "attempt": 1, "timestamp": 1,
})


def payload_validator(capability: str, kind: str) -> Draft202012Validator:
    return validator(f"{capability}.{kind}.schema.json")


def problems(v: Draft202012Validator, instance: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '$'}: {e.message}" for e in v.iter_errors(instance)]


class System:
    """The demo's wiring (cli/demo.py) on the test's server and ledger."""

    def __init__(self, bus: Bus, ledger: SQLiteEventStore, *, agents: tuple[Any, ...] = AGENTS,
                 policies: PolicySet | None = None) -> None:
        self.ledger = ledger
        self.runtimes = [AgentRuntime(a, bus) for a in agents]
        self.recorder = Recorder(bus, ledger)
        self.orch = Orchestrator(bus, decomposer=ContentPipeline(), policies=policies)

    async def __aenter__(self) -> "System":
        await self.recorder.start()
        await asyncio.gather(*(r.start() for r in self.runtimes))
        await self.orch.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.orch.stop()
        await asyncio.gather(*(r.stop() for r in self.runtimes), return_exceptions=True)
        await self.recorder.stop()

    async def run(self, topic: str, subtopics: int = 2) -> tuple[ConversationResult, list[StoredEvent]]:
        result = await asyncio.wait_for(self.orch.run(ARTICLE, {"topic": topic, "subtopics": subtopics}), 30)
        await self.recorder.catch_up()
        events = list(self.ledger.read(EventFilter(conversation_ids=(result.conversation_id,))))
        return result, events


def statuses(state: ConversationState) -> dict[str, tuple[str, int]]:
    return {tid: (t.status.value, t.attempts) for tid, t in state.tasks.items()}


def check_all(events: list[StoredEvent]) -> Counter[tuple[str, str]]:
    """Validate every envelope and every REQUEST/RESPONSE payload; returns what was checked."""
    checked: Counter[tuple[str, str]] = Counter()
    for ev in events:
        assert ev.raw, "the ledger keeps the exact wire bytes"
        wire = json.loads(ev.raw)
        assert problems(ENVELOPE, wire) == [], wire
        checked[("envelope", wire["action"])] += 1
        kind = {"REQUEST": "input", "RESPONSE": "output"}.get(wire["action"])
        if kind is None:
            continue
        v = payload_validator(wire["capability"], kind)
        assert problems(v, wire["payload"]) == [], (wire["capability"], kind, wire["payload"])
        checked[(wire["capability"], kind)] += 1
    return checked


async def test_envelopes_and_payloads_of_a_conversation_validate(bus: Bus, ledger: SQLiteEventStore) -> None:
    async with System(bus, ledger) as system:
        result, events = await system.run("event sourcing", subtopics=2)
    assert result.ok, result.outcome.reasons
    assert statuses(fold(events)) == statuses(result.state)  # the ledger's fold is what the orchestrator saw
    checked = check_all(events)
    assert len(events) >= 12  # root + 2 research + writing + editor, each REQUEST, ACK, RESPONSE
    for cap in ("research.search", "writing.draft", "editor.edit", ARTICLE):
        assert checked[(cap, "input")] >= 1 and checked[(cap, "output")] >= 1, (cap, checked)
    assert checked[("research.search", "output")] == 2
    assert checked[("envelope", "ACK")] >= 5


async def test_decisions_fallbacks_errors_and_a_degraded_root_validate(bus: Bus, ledger: SQLiteEventStore) -> None:
    # No editor runs: its tasks get no receipt, are retried once, then answered by the fallback value;
    # the conversation ends DEGRADED. Every one of those decisions is an envelope the schemas must accept.
    fallback = {"title": "unedited", "body": "the draft, unedited", "wordCount": 3,
                "changes": ["none: the editor was unavailable"]}
    quick = TaskPolicy(receipt_timeout=0.3, retry=RetryPolicy(max_attempts=2, backoff=Backoff(initial=0.05)),
                       fallback=FallbackValue(fallback))
    policies = PolicySet(per_capability={"editor.edit": quick})
    research, writing, _editor = AGENTS
    async with System(bus, ledger, agents=(research, writing), policies=policies) as system:
        result, events = await system.run("coffee", subtopics=1)
        # And an agent's own ERROR: a request whose payload breaks the research input schema.
        client = await Requester(bus, "tester").start()
        bad = new_request(sender="tester", recipient="research", capability="research.search",
                          payload={"topic": "", "maxNotes": 0})
        answers = [a async for a in client.stream(bad, timeout=10)]
        await client.stop()
        await system.recorder.catch_up(holding=[a.id for a in answers])
    assert answers[-1].error is not None and answers[-1].error.code == "INVALID_MESSAGE"
    # The schema file refuses that payload too: the published contract and the agent agree.
    assert problems(payload_validator("research.search", "input"), bad.payload)

    assert result.status.value == "DEGRADED"
    replayed = fold(events)
    assert replayed.status is result.status and statuses(replayed) == statuses(result.state)
    codes = Counter(json.loads(e.raw)["error"]["code"] for e in events if json.loads(e.raw)["error"])
    assert codes["NO_RECEIPT"] == 2 and codes["RETRY_SCHEDULED"] == 1
    assert codes["FALLBACK_USED"] == 1 and codes["DEGRADED"] == 1
    check_all(events)
    bad_events = list(ledger.read(EventFilter(conversation_ids=(bad.conversation_id,))))
    assert [json.loads(e.raw)["action"] for e in bad_events][-1] == "ERROR"
    for ev in bad_events:
        assert problems(ENVELOPE, json.loads(ev.raw)) == []


@pytest.fixture
async def recorded(bus: Bus, ledger: SQLiteEventStore) -> AsyncIterator[list[dict[str, Any]]]:
    async with System(bus, ledger) as system:
        _, events = await system.run("bees", subtopics=1)
    yield [json.loads(e.raw) for e in events]


BREAKAGES = {
    "attempt below 1": lambda w: w.update(attempt=0),
    "a sender that is not a subject token": lambda w: w.update(sender="evil.>"),
    "a conversation id with a trailing newline": lambda w: w.update(conversationId=w["conversationId"] + "\n"),
    "an unknown action": lambda w: w.update(action="DELETE"),
    "an unknown field": lambda w: w.update(shadow=True),
    "a missing task id": lambda w: w.pop("taskId"),
    "a payload that is not an object": lambda w: w.update(payload=[1]),
    "an error without a message": lambda w: w.update(error={"code": "X"}),
}


@pytest.mark.parametrize("why", list(BREAKAGES))
async def test_the_schema_refuses_a_broken_copy_of_a_real_envelope(recorded: list[dict[str, Any]], why: str) -> None:
    # The positive checks above mean something only if the same files refuse what is wrong.
    wire = dict(recorded[0])
    assert problems(ENVELOPE, wire) == []
    BREAKAGES[why](wire)
    assert problems(ENVELOPE, wire), why


async def test_payload_schemas_refuse_a_broken_copy_of_a_real_payload(recorded: list[dict[str, Any]]) -> None:
    responses = {w["capability"]: w["payload"] for w in recorded if w["action"] == "RESPONSE"}
    notes = dict(responses["research.search"])
    assert problems(payload_validator("research.search", "output"), notes) == []
    notes["notes"] = [{**notes["notes"][0], "score": -1}]
    assert problems(payload_validator("research.search", "output"), notes)
    draft = {k: v for k, v in responses["writing.draft"].items() if k != "title"}
    assert problems(payload_validator("writing.draft", "output"), draft)
    outcome = dict(responses[ARTICLE], status=7)
    assert problems(payload_validator(ARTICLE, "output"), outcome)


async def test_numbers_beyond_the_contract_are_rejects_and_the_recorder_goes_on(
        bus: Bus, ledger: SQLiteEventStore) -> None:
    # An attempt of 2^63 once decoded, then overflowed SQLite's INTEGER and stopped the recorder for good.
    hostile = {**json.loads(ENVELOPE_EXAMPLE), "attempt": 2**63}
    assert problems(ENVELOPE, hostile)  # the schema file refuses it, like the codec
    good = new_request(sender="tester", recipient="nobody", capability="x.y", payload={})
    async with Recorder(bus, ledger) as rec:
        await bus.publish_raw(bus.subjects.of(good).replace(good.conversation_id, "hostile"), json.dumps(hostile).encode())
        ack = await bus.publish(good)
        await rec.wait_for(ack.seq)
    [reject] = ledger.rejects()
    assert reject.code == "INVALID_MESSAGE" and "$.attempt" in reject.reason
    assert [e.id for e in ledger.envelopes()] == [good.id]
