"""No agent speaks for another: agent `alpha` attacks agent `beta` on a secured deployment.

Every attempt is refused by the server (permissions) or by ledgerbus (signature check), nothing forged
reaches the fold's events, and beta keeps serving.
"""

from __future__ import annotations

from collections import Counter

import msgspec
import pytest
from nats.js import api

from ledgerbus.agents.runtime import AgentRuntime
from ledgerbus.agents.sdk import Agent
from ledgerbus.bus.requester import Requester
from ledgerbus.bus.streams import consumer_name
from ledgerbus.eventstore.recorder import Recorder
from ledgerbus.eventstore.sqlite import SQLiteEventStore
from ledgerbus.schemas.capability import CapabilityRegistry
from ledgerbus.schemas.envelope import new_request
from ledgerbus.security.keys import SIG_HEADER

from sechelp import eventually


class Text(msgspec.Struct):
    text: str


def beta_agent(calls: Counter[str]) -> Agent:
    agent = Agent("beta", registry=CapabilityRegistry())

    @agent.capability("beta.shout")
    async def shout(inp: Text, ctx) -> Text:
        calls[ctx.task_id] += 1
        return Text(inp.text.upper())

    return agent


def violated(bus, fragment: str) -> bool:
    return any("permissions violation" in v.lower() and fragment.lower() in v.lower() for v in bus.violations)


async def test_secured_round_trip_is_signed_and_recorded(secured, tmp_path):
    calls: Counter[str] = Counter()
    beta, orch, rec_bus = await secured.connect("beta"), await secured.connect("orchestrator"), await secured.connect("recorder")
    store = SQLiteEventStore(tmp_path / "ledger.db")
    try:
        async with AgentRuntime(beta_agent(calls), beta, announce=True), Recorder(rec_bus, store) as rec:
            req = await Requester(orch, "orchestrator").start()
            resp = await req.request("beta", "beta.shout", {"text": "hi"}, timeout=5)
            assert resp.payload == {"text": "HI"}
            await rec.catch_up(holding=[resp.id])
        assert [e.action.value for e in store.envelopes()] == ["REQUEST", "ACK", "RESPONSE"]
        assert store.db.execute("select count(*) from rejects").fetchone()[0] == 0
        assert not beta.violations and not orch.violations and not rec_bus.violations
    finally:
        store.close()
        for b in (beta, orch, rec_bus):
            await b.close()


async def test_alpha_cannot_publish_as_another(secured, tmp_path):
    calls: Counter[str] = Counter()
    alpha, beta, rec_bus = await secured.connect("alpha"), await secured.connect("beta"), await secured.connect("recorder")
    orch = await secured.connect("orchestrator")
    store = SQLiteEventStore(tmp_path / "ledger.db")
    try:
        async with AgentRuntime(beta_agent(calls), beta, announce=False), Recorder(rec_bus, store) as rec:
            errors: list = []

            async def on_error(msg) -> None:
                errors.append(orch.codec.decode(msg.data))

            await orch.nc.subscribe("lb.orchestrator.ERROR.>", cb=on_error)
            # 1. alpha signs with its own key a REQUEST that claims to come from the orchestrator
            forged = new_request(sender="orchestrator", recipient="beta", capability="beta.shout", payload={"text": "x"})
            await alpha.publish(forged)
            # 2. no signature at all
            unsigned = new_request(sender="orchestrator", recipient="beta", capability="beta.shout", payload={"text": "y"})
            await alpha.publish_raw(alpha.subjects.of(unsigned), alpha.codec.encode(unsigned), {"Nats-Msg-Id": unsigned.id})
            # 3. a genuine orchestrator signature over a different body (tampering after signing)
            genuine = new_request(sender="orchestrator", recipient="beta", capability="beta.shout", payload={"text": "z"})
            sig = orch.identity.sign(orch.codec.encode(genuine))
            tampered = msgspec.structs.replace(genuine, payload={"text": "tampered"})
            await alpha.publish_raw(alpha.subjects.of(tampered), alpha.codec.encode(tampered),
                                    {"Nats-Msg-Id": tampered.id, SIG_HEADER: sig})
            await eventually(lambda: len(errors) >= 3, what="three SPOOFED_SENDER errors")
            assert {e.error.code for e in errors} == {"SPOOFED_SENDER"}
            assert {e.causation_id for e in errors} == {forged.id, unsigned.id, tampered.id}
            assert sum(calls.values()) == 0  # no handler ran for a forged request
            await rec.catch_up()
            # beta is unaffected: a genuine request is still served
            req = await Requester(orch, "orchestrator").start()
            ok = await req.request("beta", "beta.shout", {"text": "ok"}, timeout=5)
            assert ok.payload == {"text": "OK"}
            await rec.catch_up(holding=[ok.id, *(e.id for e in errors)])
        ids = {e.id for e in store.envelopes()}
        assert not ids & {forged.id, unsigned.id, tampered.id}, "a forged envelope reached the events table"
        rejected = store.db.execute("select code, count(*) from rejects group by code").fetchall()
        assert dict(rejected) == {"SPOOFED_SENDER": 3}
    finally:
        store.close()
        for b in (alpha, beta, rec_bus, orch):
            await b.close()


async def test_alpha_cannot_pull_beta_requests(secured):
    alpha = await secured.connect("alpha")
    js = alpha.nc.jetstream(timeout=0.5)
    try:
        stream = alpha.subjects.stream
        # its own consumer name with beta's filter: the create subject pins the filter, the server refuses
        cfg = api.ConsumerConfig(name=consumer_name("alpha"), durable_name=consumer_name("alpha"),
                                 filter_subject="lb.beta.REQUEST.>", ack_policy=api.AckPolicy.EXPLICIT)
        with pytest.raises(Exception):
            await js.add_consumer(stream, cfg)
        # binding to beta's consumer and pulling
        sub = await js.pull_subscribe_bind(consumer_name("beta"), stream=stream)
        with pytest.raises(Exception):
            await sub.fetch(1, timeout=1.0)
        await eventually(lambda: violated(alpha, "agent-beta"), what="a permission violation on beta's consumer")
        # an ephemeral consumer over the whole ledger
        with pytest.raises(Exception):
            await js.add_consumer(stream, api.ConsumerConfig(filter_subject="lb.>"))
        with pytest.raises(Exception):
            await js.get_msg(stream, 1)
    finally:
        await alpha.close()


async def test_alpha_cannot_read_beta_answers(secured):
    calls: Counter[str] = Counter()
    alpha, beta, orch = await secured.connect("alpha"), await secured.connect("beta"), await secured.connect("orchestrator")
    seen: list[str] = []

    async def spy(msg) -> None:
        seen.append(msg.subject)

    try:
        for subject in ("lb.beta.*.>", "lb.orchestrator.*.>", "lb.>", "_INBOX.beta.>", "_INBOX.>"):
            await alpha.nc.subscribe(subject, cb=spy)
        for fragment in ("lb.beta", "lb.orchestrator", '"lb.>"', "_INBOX.beta", '"_INBOX.>"'):
            await eventually(lambda: violated(alpha, fragment), what=f"subscribe violation for {fragment}")
        async with AgentRuntime(beta_agent(calls), beta, announce=False):
            req = await Requester(orch, "orchestrator").start()
            assert (await req.request("beta", "beta.shout", {"text": "s"}, timeout=5)).payload == {"text": "S"}
        await alpha.nc.flush()
        assert seen == []
    finally:
        for b in (alpha, beta, orch):
            await b.close()


async def test_alpha_cannot_delete_or_purge_the_ledger(secured):
    alpha = await secured.connect("alpha")
    await secured.admin.publish(new_request(sender="admin", recipient="beta", capability="beta.shout", payload={"text": "keep"}))
    js = alpha.nc.jetstream(timeout=0.5)
    stream = alpha.subjects.stream
    try:
        for attempt in (js.purge_stream(stream), js.delete_stream(stream),
                        js.delete_consumer(stream, consumer_name("beta")),
                        js.update_stream(api.StreamConfig(name=stream, subjects=["lb.>"], max_msgs=0)),
                        js.delete_msg(stream, 1)):
            with pytest.raises(Exception):
                await attempt
        await eventually(lambda: violated(alpha, "PURGE") and violated(alpha, "DELETE"), what="purge/delete violations")
        info = await secured.admin.js.stream_info(stream)
        assert info.state.messages == 1
        await secured.admin.js.consumer_info(stream, consumer_name("beta"))
    finally:
        await alpha.close()


async def test_alpha_can_neither_read_nor_plant_results_recorded_for_another_requester(secured):
    """The requester identity of a result is its request's verified sender: alpha naming the orchestrator's
    idempotency key gets a run of its own, and a result alpha records first never answers the orchestrator."""
    runs: Counter[str] = Counter()
    agent = Agent("beta", registry=CapabilityRegistry())

    @agent.capability("beta.draft", input=dict, output=dict)
    async def draft(inp: dict, ctx) -> dict:
        runs[ctx.envelope.sender] += 1
        return {"draft": f"for {ctx.envelope.sender}"}

    alpha, beta, orch = await secured.connect("alpha"), await secured.connect("beta"), await secured.connect("orchestrator")
    try:
        async with AgentRuntime(agent, beta, announce=False):
            o = await Requester(orch, "orchestrator").start()
            a = await Requester(alpha, "alpha").start()
            mine = await o.request("beta", "beta.draft", {}, idempotency_key="conv-9/write", timeout=5)
            theirs = await a.request("beta", "beta.draft", {}, idempotency_key="conv-9/write", timeout=5)
            assert mine.payload == {"draft": "for orchestrator"} and theirs.payload == {"draft": "for alpha"}
            await a.request("beta", "beta.draft", {}, idempotency_key="conv-10/write", timeout=5)
            later = await o.request("beta", "beta.draft", {}, idempotency_key="conv-10/write", timeout=5)
            assert later.payload == {"draft": "for orchestrator"}
            again = await o.request("beta", "beta.draft", {}, idempotency_key="conv-9/write", timeout=5)
            assert again.payload == mine.payload
        assert runs == {"orchestrator": 2, "alpha": 2}
        assert not beta.violations and not alpha.violations and not orch.violations
    finally:
        for b in (alpha, beta, orch):
            await b.close()
