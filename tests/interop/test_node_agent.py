"""A JavaScript agent written from docs/PROTOCOL.md alone serves the Python orchestrator.

`examples/node-agent/agent.mjs` (nats.js + Ajv) runs as a real `node` subprocess against the test's
nats-server. The orchestrator finds it through the directory (its capabilities are not named after
its type, so routing by name would miss it), sends it a two-step plan, and gets validated answers;
the ledger shows each step's REQUEST/ACK/PROGRESS/RESPONSE tied together as the protocol says; bad
input gets exactly one ERROR and no ACK.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping
from typing import Any

import msgspec
import pytest
from jsonschema import Draft202012Validator

from nodeagent import SCHEMAS, NodeAgent

from ledgerbus.agents.directory import Directory
from ledgerbus.bus.connection import Bus
from ledgerbus.bus.requester import Requester
from ledgerbus.cli.live import stored_events
from ledgerbus.errors import RemoteError
from ledgerbus.eventstore.base import StoredEvent
from ledgerbus.eventstore.fold import ConversationStatus, TaskStatus
from ledgerbus.orchestrator.engine import Orchestrator
from ledgerbus.orchestrator.inflight import step_task_id
from ledgerbus.orchestrator.plan import Plan, PlanContext, Step
from ledgerbus.schemas.capability import CapabilityRegistry
from ledgerbus.schemas.codes import Action


class Shouted(msgspec.Struct, forbid_unknown_fields=True):
    text: str
    length: int


class Counted(msgspec.Struct, forbid_unknown_fields=True):
    words: int
    characters: int


class ShoutThenCount:
    """Two steps: shout the text, then count the shouted text."""

    def plan(self, capability: str, request: Mapping[str, Any]) -> Plan:
        def counted(ctx: PlanContext) -> dict[str, Any]:
            return {"text": ctx.results["shout"]["text"]}

        return Plan([Step("shout", "text.shout", dict(request)),
                     Step("count", "text.count", counted, depends_on=("shout",))])


def schema_file(name: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads((SCHEMAS / name).read_text()))


ENVELOPE = schema_file("envelope.schema.json")


async def conversation(bus: Bus, conversation_id: str) -> list[StoredEvent]:
    return await stored_events(bus, bus.subjects.conversation(conversation_id))


async def headers_of(bus: Bus, ev: StoredEvent) -> dict[str, str]:
    msg = await bus.js.get_msg(bus.subjects.stream, ev.position)
    return dict(msg.headers or {})


async def cli_agents(url: str, prefix: str) -> list[dict[str, Any]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ledgerbus.cli.main", "agents", "--url", url, "--prefix", prefix, "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    rows: list[dict[str, Any]] = json.loads(out)
    return rows


async def test_the_orchestrator_runs_a_plan_on_the_node_agent(nats_server: Any, bus: Bus) -> None:
    async with NodeAgent(nats_server.url, nats_server.prefix) as node:
        # The directory lists it, in the shape schemas/directory-entry.schema.json gives.
        kv = await Directory(bus).bucket()
        raw = json.loads((await kv.get(f"jstext.{node.instance}")).value)
        assert not list(schema_file("directory-entry.schema.json").iter_errors(raw))
        live = await Directory(bus).live_types()
        assert [i.instance for i in live["jstext"]] == [node.instance]
        caps = {c.name: c for c in live["jstext"][0].capabilities}
        assert set(caps) == {"text.shout", "text.count"}
        rows = await cli_agents(nats_server.url, nats_server.prefix)
        assert [(r["agent"], r["instances"], r["capabilities"]) for r in rows] == [
            ("jstext", [node.instance], ["text.count", "text.shout"])]

        async with Orchestrator(bus, decomposer=ShoutThenCount(), registry=CapabilityRegistry()) as orch:
            result = await asyncio.wait_for(orch.run("text.shout", {"text": "hello from node"}), 30)
        assert result.status is ConversationStatus.DONE, (result.outcome.reasons, node.log())

        cid = result.conversation_id
        shout, count = result.state.tasks[step_task_id(cid, "shout")], result.state.tasks[step_task_id(cid, "count")]
        assert (shout.status, count.status) == (TaskStatus.DONE, TaskStatus.DONE)
        assert (shout.agent, count.agent) == ("jstext", "jstext")  # routed by the directory, not by name
        # Validated: by the Python types and by the schemas the agent announced.
        assert msgspec.convert(shout.result, Shouted) == Shouted(text="HELLO FROM NODE", length=15)
        assert msgspec.convert(count.result, Counted) == Counted(words=3, characters=15)
        for cap, task in (("text.shout", shout), ("text.count", count)):
            Draft202012Validator.check_schema(caps[cap].output_schema)
            assert not list(Draft202012Validator(caps[cap].output_schema).iter_errors(task.result))

        events = await conversation(bus, cid)
        for ev in events:
            assert not list(ENVELOPE.iter_errors(json.loads(ev.raw))), ev.raw
        for task_id, actions in ((shout.task_id, ["REQUEST", "ACK", "PROGRESS", "RESPONSE"]),
                                 (count.task_id, ["REQUEST", "ACK", "RESPONSE"])):
            mine = [ev.envelope for ev in events if ev.envelope.task_id == task_id]
            assert [e.action.value for e in mine] == actions
            req, answers = mine[0], mine[1:]
            for ans in answers:
                assert ans.causation_id == req.id
                assert (ans.sender, ans.recipient) == ("jstext", "orchestrator")
                assert (ans.conversation_id, ans.attempt, ans.capability) == (cid, req.attempt, req.capability)
                assert ans.idempotency_key == req.key and ans.deadline == req.deadline
            assert answers[0].payload == {"instance": node.instance}
        for ev in events:
            if ev.envelope.sender == "jstext":
                h = await headers_of(bus, ev)
                env = ev.envelope
                assert (h["Nats-Msg-Id"], h["Lb-Sender"], h["Lb-Task"]) == (env.id, "jstext", env.task_id)

        assert await node.stop() == 0, node.log()
    assert "jstext" not in await Directory(bus).live_types()  # withdrawn on SIGTERM


async def test_bad_input_gets_one_error_from_the_node_agent_and_no_ack(nats_server: Any, bus: Bus) -> None:
    async with NodeAgent(nats_server.url, nats_server.prefix) as node:
        # An empty registry: the requester sends the payload as it is, the agent has to refuse it.
        requester = await Requester(bus, "tester", registry=CapabilityRegistry()).start()
        try:
            refusals: dict[str, RemoteError] = {}
            for name, cap, payload in (("type", "text.shout", {"text": 42}),
                                       ("missing", "text.count", {}),
                                       ("unknown field", "text.shout", {"text": "hi", "loud": True}),
                                       ("unknown capability", "text.whisper", {"text": "hi"})):
                with pytest.raises(RemoteError) as info:
                    await requester.request("jstext", cap, payload, timeout=10)
                refusals[name] = info.value
            ok = await requester.request("jstext", "text.shout", {"text": "still serving"}, timeout=10)
        finally:
            await requester.stop()
        assert ok.payload == {"text": "STILL SERVING", "length": 13}
        assert {n: (e.code, e.retryable) for n, e in refusals.items()} == {
            "type": ("INVALID_MESSAGE", False), "missing": ("INVALID_MESSAGE", False),
            "unknown field": ("INVALID_MESSAGE", False), "unknown capability": ("UNKNOWN_CAPABILITY", False)}
        assert refusals["type"].details == {"path": "$.payload.text"}
        assert refusals["missing"].details == {"path": "$.payload.text"}
        assert refusals["unknown field"].details == {"path": "$.payload.loud"}
        assert "text.shout" in str(refusals["unknown capability"])

        # Not an envelope at all: an ERROR addressed from what can be salvaged (the Lb-Sender header and
        # the subject's conversation id), and the message is not redelivered.
        listener = await bus.nc.subscribe(bus.subjects.inbox("tester"))
        await bus.publish_raw(f"{bus.subjects.prefix}.jstext.REQUEST.conv-raw", b"{not json",
                              headers={"Lb-Sender": "tester", "Nats-Msg-Id": "raw-1"})
        msg = await listener.next_msg(timeout=10)
        await listener.unsubscribe()
        err = bus.codec.decode(msg.data)
        assert (err.action, err.sender, err.recipient, err.conversation_id) == (Action.ERROR, "jstext", "tester", "conv-raw")
        assert err.error is not None and err.error.code == "INVALID_MESSAGE" and "malformed JSON" in err.error.message

        events = [ev.envelope for ev in await stored_events(bus)]
        refused = {e.task_id for e in events if e.action is Action.ERROR}
        assert len(refused) == 5
        assert not [e for e in events if e.action is Action.ACK and e.task_id in refused]
        # Every one acked or termed: nothing left to redeliver (the acks may trail the answers a little).
        async with asyncio.timeout(10):
            while True:
                info = await bus.js.consumer_info(bus.subjects.stream, "agent-jstext")
                if info.num_ack_pending == 0 and info.num_pending == 0 and info.num_redelivered == 0:
                    break
                await asyncio.sleep(0.05)
