"""Attacks by a member of the deployment, signed correctly as itself: agent `alpha` against `beta` and the
orchestrator, on a secured nats-server with the generated users.

- an answer counts only from whom it was asked (the fold, the orchestrator, the Requester);
- a signature binds an envelope to its subject, and a second copy of an envelope id is refused;
- no one purges shared state (rollup headers on the KV buckets);
- no ledger metadata leaks (stream info of the ledger and the buckets).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from typing import Any

import nats.errors
import pytest

from ledgerbus.agents.results import ResultStore
from ledgerbus.agents.runtime import AgentRuntime
from ledgerbus.agents.sdk import Agent
from ledgerbus.bus.requester import Requester
from ledgerbus.eventstore.base import EventFilter
from ledgerbus.eventstore.fold import ConversationStatus, fold
from ledgerbus.eventstore.recorder import Recorder
from ledgerbus.eventstore.sqlite import SQLiteEventStore
from ledgerbus.orchestrator.engine import Orchestrator
from ledgerbus.orchestrator.plan import Plan, Step
from ledgerbus.orchestrator.policy import PolicySet, RateLimitPolicy
from ledgerbus.schemas.capability import CapabilityRegistry
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import Envelope, answer, new_request
from ledgerbus.security.permissions import AGENTS_BUCKET, RESULTS_BUCKET

from sechelp import eventually


class TwoSteps:
    def plan(self, capability: str, request: Mapping[str, Any]) -> Plan:
        return Plan([Step("a", "alpha.work", {"n": 1}), Step("b", "beta.work", {"n": 2}, depends_on=("a",))])


class Gate:
    """Holds beta's handler until the test has attacked, and records each run."""

    def __init__(self) -> None:
        self.started: asyncio.Queue[Envelope] = asyncio.Queue()
        self.release = asyncio.Event()
        self.calls: Counter[str] = Counter()


def worker(name: str, reg: CapabilityRegistry, gate: Gate | None = None) -> Agent:
    agent = Agent(name, registry=reg)

    @agent.capability(f"{name}.work", input=dict, output=dict)
    async def work(inp: dict[str, Any], ctx: Any) -> dict[str, Any]:
        if gate is not None:
            gate.calls[ctx.task_id] += 1
            gate.started.put_nowait(ctx.envelope)
            await gate.release.wait()
        return {"by": name, "n": inp.get("n")}

    return agent


def violated(bus: Any, fragment: str) -> bool:
    return any("permissions violation" in v.lower() and fragment.lower() in v.lower() for v in bus.violations)


class Inbox:
    """Every message on a subject, as a core NATS subscriber (admin) sees it: subject, data, headers."""

    def __init__(self) -> None:
        self.msgs: list[Any] = []

    async def cb(self, msg: Any) -> None:
        self.msgs.append(msg)

    def has(self, env_id: str, action: str) -> bool:
        return any(self._match(m, env_id, action) for m in self.msgs)

    def of(self, env_id: str, action: str) -> Any:
        return next(m for m in self.msgs if self._match(m, env_id, action))

    @staticmethod
    def _match(m: Any, env_id: str, action: str) -> bool:
        return m.subject.split(".")[2] == action and f'"id":"{env_id}"'.encode() in m.data


async def raw_publish(bus: Any, subject: str, data: bytes, headers: dict[str, str]) -> None:
    """Publish bytes and headers as given: no signing JetStream context in between."""
    await bus.nc.jetstream(timeout=2).publish(subject, data, headers=headers)


# -- an answer counts only from whom it was asked ----------------------------------------------

async def test_an_agent_cannot_answer_another_agents_tasks_or_the_conversation(secured, tmp_path):
    reg, gate = CapabilityRegistry(), Gate()
    buses = {n: await secured.connect(n) for n in ("alpha", "beta", "orchestrator", "recorder")}
    alpha = buses["alpha"]
    store = SQLiteEventStore(tmp_path / "ledger.db")
    try:
        orch = Orchestrator(buses["orchestrator"], decomposer=TwoSteps(), registry=reg,
                            policies=PolicySet(rate=RateLimitPolicy(global_rate=None, agent_rate=None)))
        async with AgentRuntime(worker("alpha", reg), alpha), AgentRuntime(worker("beta", reg, gate), buses["beta"]), \
                Recorder(buses["recorder"], store) as rec, orch:
            running = asyncio.create_task(orch.run("test.two", {}, requester="orchestrator"))
            beta_req = await asyncio.wait_for(gate.started.get(), 10)
            root = orch.runs[beta_req.conversation_id].root
            # alpha, signed as itself, knows the task ids (`<conversation>_<step>`) and even the REQUEST's id
            forged = [
                answer(beta_req, Action.ACK, sender="alpha", payload={"instance": "alpha-1"}),
                answer(beta_req, Action.RESPONSE, sender="alpha", payload={"by": "alpha's choice", "n": 2}),
                answer(root, Action.RESPONSE, sender="alpha", payload={"status": "DONE", "result": {"forged": True}}),
            ]
            for env in forged:
                await alpha.publish(env)
            await rec.catch_up(holding=[e.id for e in forged])
            assert not running.done()  # beta has not answered: nothing alpha sent settled its task
            gate.release.set()
            result = await asyncio.wait_for(running, 20)
            await rec.catch_up()
        assert result.status is ConversationStatus.DONE, result.state
        assert result.result == {"a": {"by": "alpha", "n": 1}, "b": {"by": "beta", "n": 2}}
        assert sum(gate.calls.values()) == 1  # beta was asked, and answered itself
        # The ledger's fold (replay) agrees with the run, and says what it ignored.
        replayed = fold(store.read(EventFilter(conversation_ids=(result.conversation_id,))))
        assert replayed.status is ConversationStatus.DONE
        assert replayed.result == result.state.result and replayed.result["result"] == result.result
        assert replayed.tasks[beta_req.task_id].result == {"by": "beta", "n": 2}
        ignored = {i.envelope_id: i for i in replayed.ignored}
        assert set(ignored) == {e.id for e in forged}
        assert {i.sender for i in ignored.values()} == {"alpha"}
        assert "addressed to beta" in ignored[forged[1].id].reason
        assert "addressed to orchestrator" in ignored[forged[2].id].reason
        # The orchestrator's live fold ignored them too.
        assert {i.envelope_id for i in result.state.ignored} == {e.id for e in forged}
    finally:
        store.close()
        for bus in buses.values():
            await bus.close()


async def test_the_requester_takes_an_answer_only_from_whom_it_asked(secured):
    reg, gate = CapabilityRegistry(), Gate()
    alpha, beta, orch = [await secured.connect(n) for n in ("alpha", "beta", "orchestrator")]
    try:
        async with AgentRuntime(worker("beta", reg, gate), beta, announce=False):
            req = await Requester(orch, "orchestrator", registry=reg).start()
            asking = asyncio.create_task(req.request("beta", "beta.work", {"n": 7}, timeout=10))
            beta_req = await asyncio.wait_for(gate.started.get(), 10)
            await alpha.publish(answer(beta_req, Action.RESPONSE, sender="alpha", payload={"by": "alpha", "n": 7}))
            # alpha's next envelope to the orchestrator arrives after its forgery (one connection, in order)
            sentinel = new_request(sender="alpha", recipient="orchestrator", capability="alpha.note", payload={})
            seen = asyncio.get_running_loop().create_future()
            req.add_listener(lambda e: seen.set_result(e) if e.id == sentinel.id and not seen.done() else None)
            await alpha.publish(sentinel)
            await asyncio.wait_for(seen, 5)
            assert not asking.done(), "the Requester took alpha's answer to a request it sent to beta"
            gate.release.set()
            resp = await asking
        assert resp.sender == "beta" and resp.payload == {"by": "beta", "n": 7}
    finally:
        for b in (alpha, beta, orch):
            await b.close()


# -- a signature binds the message to where it goes ----------------------------------------------

async def test_a_genuine_envelope_republished_on_another_subject_is_refused_everywhere(secured, tmp_path):
    reg = CapabilityRegistry()
    calls: Counter[str] = Counter()
    alpha, beta, orch, rec_bus = [await secured.connect(n) for n in ("alpha", "beta", "orchestrator", "recorder")]
    wire = Inbox()
    await secured.admin.nc.subscribe("lb.>", cb=wire.cb)  # the attacker's copy of genuine signed messages
    await secured.admin.nc.flush()
    store = SQLiteEventStore(tmp_path / "ledger.db")
    beta_agent = Agent("beta", registry=reg)

    @beta_agent.capability("beta.work", input=dict, output=dict)
    async def work(inp: dict[str, Any], ctx: Any) -> dict[str, Any]:
        calls[ctx.conversation_id] += 1
        return {"by": "beta"}

    try:
        async with AgentRuntime(beta_agent, beta, announce=False), Recorder(rec_bus, store) as rec:
            req = await Requester(orch, "orchestrator", registry=reg).start()
            resp = await req.request("beta", "beta.work", {}, timeout=10)
            await eventually(lambda: wire.has(resp.id, "RESPONSE"), what="beta's RESPONSE on the wire")
            request_msg, response_msg = wire.of(resp.causation_id, "REQUEST"), wire.of(resp.id, "RESPONSE")
            spoofed: list[Envelope] = []

            def on_error(e: Envelope) -> None:
                if e.action is Action.ERROR and e.error is not None and e.error.code == "SPOOFED_SENDER":
                    spoofed.append(e)

            req.add_listener(on_error)
            # A fresh requester (another process of the orchestrator user) that has not seen beta's answer yet.
            other = await Requester(await secured.connect("orchestrator"), "orchestrator").start()
            heard: list[Envelope] = []
            other.add_listener(heard.append)
            # 1. the orchestrator's genuine REQUEST to beta, re-published in another conversation's subject
            elsewhere = "conv-elsewhere"
            await raw_publish(alpha, f"lb.beta.REQUEST.{elsewhere}", request_msg.data,
                              {**request_msg.headers, "Nats-Msg-Id": "replay-1"})
            # 2. beta's genuine RESPONSE, re-published to another recipient and to another conversation
            await raw_publish(alpha, f"lb.orchestrator.RESPONSE.{elsewhere}", response_msg.data,
                              {**response_msg.headers, "Nats-Msg-Id": "replay-2"})
            await raw_publish(alpha, f"lb.alpha.RESPONSE.{resp.conversation_id}", response_msg.data,
                              {**response_msg.headers, "Nats-Msg-Id": "replay-3"})
            sentinel = new_request(sender="alpha", recipient="orchestrator", capability="alpha.note", payload={})
            await alpha.publish(sentinel)  # after the replays, on the same connection: heard after them
            # The agent runtime refuses the request as spoofed (it answers the claimed sender, the orchestrator).
            await eventually(lambda: len(spoofed) >= 1, what="beta's SPOOFED_SENDER for the re-published request")
            assert spoofed[0].causation_id == resp.causation_id and spoofed[0].sender == "beta"
            assert "conv-elsewhere" in spoofed[0].error.message or "arrived on" in spoofed[0].error.message
            assert sum(calls.values()) == 1
            # The recorder files all three among the rejects, never among the events.
            await eventually(lambda: rec.recorded_seq >= 8, what="the replays in the mirror")
            await rec.catch_up()
            rejects = store.db.execute("select subject, code from rejects order by position").fetchall()
            assert rejects == [(f"lb.beta.REQUEST.{elsewhere}", "SPOOFED_SENDER"),
                               (f"lb.orchestrator.RESPONSE.{elsewhere}", "SPOOFED_SENDER"),
                               (f"lb.alpha.RESPONSE.{resp.conversation_id}", "SPOOFED_SENDER")]
            # The fresh Requester never heard the re-published RESPONSE (it did hear alpha's next envelope).
            await eventually(lambda: any(e.id == sentinel.id for e in heard), what="the other requester")
            assert resp.id not in {e.id for e in heard}
            await other.bus.close()
    finally:
        store.close()
        for b in (alpha, beta, orch, rec_bus):
            await b.close()


async def test_an_old_body_only_signature_is_recognised_and_refused(secured):
    alpha, beta, orch = [await secured.connect(n) for n in ("alpha", "beta", "orchestrator")]
    reg = CapabilityRegistry()
    try:
        async with AgentRuntime(worker("beta", reg), beta, announce=False):
            errors: list[Envelope] = []
            req = await Requester(orch, "orchestrator").start()
            req.add_listener(lambda e: errors.append(e) if e.action is Action.ERROR else None)
            env = new_request(sender="orchestrator", recipient="beta", capability="beta.work", payload={})
            data = orch.codec.encode(env)
            old = orch.identity.sign(data)  # the v1 format: the body only, plain base64
            await raw_publish(alpha, orch.subjects.of(env), data, {"Nats-Msg-Id": env.id, "Lb-Sig": old})
            await eventually(lambda: bool(errors), what="SPOOFED_SENDER")
        (err,) = errors
        assert err.error.code == "SPOOFED_SENDER" and err.causation_id == env.id
        assert "old (v1)" in err.error.message
    finally:
        for b in (alpha, beta, orch):
            await b.close()


async def test_a_replayed_answer_is_taken_once(secured):
    """Beyond the ledger's duplicate window (here: a fresh Nats-Msg-Id), a second copy of an envelope id
    on its own subject verifies, and the Requester ignores it."""
    alpha, beta, orch = [await secured.connect(n) for n in ("alpha", "beta", "orchestrator")]
    wire = Inbox()
    await secured.admin.nc.subscribe("lb.orchestrator.>", cb=wire.cb)
    await secured.admin.nc.flush()
    reg = CapabilityRegistry()
    try:
        async with AgentRuntime(worker("beta", reg), beta, announce=False):
            req = await Requester(orch, "orchestrator", registry=reg).start()
            heard: list[Envelope] = []
            req.add_listener(heard.append)
            resp = await req.request("beta", "beta.work", {"n": 1}, timeout=10)
            await eventually(lambda: wire.has(resp.id, "RESPONSE"), what="the RESPONSE")
            copy = wire.of(resp.id, "RESPONSE")
            await raw_publish(alpha, copy.subject, copy.data, {**copy.headers, "Nats-Msg-Id": "another-id"})
            sentinel = new_request(sender="alpha", recipient="orchestrator", capability="alpha.note", payload={})
            await alpha.publish(sentinel)
            await eventually(lambda: any(e.id == sentinel.id for e in heard), what="alpha's sentinel")
        assert [e.id for e in heard].count(resp.id) == 1
    finally:
        for b in (alpha, beta, orch):
            await b.close()


# -- no one purges shared state ------------------------------------------------------------------

@pytest.mark.parametrize("rollup", ["all", "sub"])
async def test_a_rollup_on_an_agents_own_key_purges_nothing(secured, rollup):
    reg, gate = CapabilityRegistry(), Gate()
    gate.release.set()
    alpha, beta, orch = [await secured.connect(n) for n in ("alpha", "beta", "orchestrator")]
    try:
        async with AgentRuntime(worker("beta", reg, gate), beta, announce=True) as runtime:
            req = await Requester(orch, "orchestrator", registry=reg).start()
            first = await req.request("beta", "beta.work", {"n": 1}, timeout=10)
            results = ResultStore(secured.admin)
            assert await results.get("beta", "orchestrator", first.task_id) is not None
            js = alpha.nc.jetstream(timeout=2)
            with pytest.raises(Exception, match="rollup"):
                await js.publish(f"$KV.{RESULTS_BUCKET}.alpha.x", b"{}", headers={"Nats-Rollup": rollup})
            with pytest.raises(Exception, match="rollup"):
                await js.publish(f"$KV.{AGENTS_BUCKET}.alpha.x", b"{}", headers={"Nats-Rollup": rollup})
            # beta's recorded result and its directory entry are still there
            assert await ResultStore(secured.admin).get("beta", "orchestrator", first.task_id) is not None
            directory = await secured.admin.js.key_value(AGENTS_BUCKET)
            assert (await directory.get(f"beta.{runtime.instance}")).value
            # the same task asked again is answered from the record: the handler does not run again
            again = new_request(sender="orchestrator", recipient="beta", capability="beta.work", payload={"n": 1},
                                task_id=first.task_id, attempt=2)
            answers = [a async for a in req.stream(again, timeout=10)]
        assert answers[-1].action is Action.RESPONSE and answers[-1].payload == first.payload
        assert gate.calls[first.task_id] == 1
    finally:
        for b in (alpha, beta, orch):
            await b.close()


# -- no ledger metadata leaks ----------------------------------------------------------------------

@pytest.mark.parametrize("stream", ["LEDGER", f"KV_{RESULTS_BUCKET}", f"KV_{AGENTS_BUCKET}"])
async def test_an_agent_may_not_list_the_ledgers_or_a_buckets_subjects(secured, stream):
    alpha, beta, orch = [await secured.connect(n) for n in ("alpha", "beta", "orchestrator")]
    reg = CapabilityRegistry()
    try:
        async with AgentRuntime(worker("beta", reg), beta, announce=True):  # a conversation and a result exist
            req = await Requester(orch, "orchestrator", registry=reg).start()
            await req.request("beta", "beta.work", {"n": 1}, timeout=10)
        with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
            await alpha.nc.request(f"$JS.API.STREAM.INFO.{stream}", b'{"subjects_filter": ">"}', timeout=1)
        await eventually(lambda: violated(alpha, f"STREAM.INFO.{stream}"), what="a permission violation")
        assert not beta.violations  # the runtime itself needs no stream info
    finally:
        for b in (alpha, beta, orch):
            await b.close()
