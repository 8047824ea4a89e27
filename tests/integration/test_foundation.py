"""Issue 3: the foundation against a real nats-server and a real SQLite file."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from ledgerbus.agents.runtime import AgentRuntime
from ledgerbus.agents.sdk import Agent
from ledgerbus.bus.requester import Requester
from ledgerbus.errors import RemoteError
from ledgerbus.eventstore.fold import TaskStatus, fold
from ledgerbus.eventstore.recorder import Recorder
from ledgerbus.schemas.capability import CapabilityRegistry
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import new_request


class Greeting(msgspec.Struct):
    name: str
    times: int = 1


class Reply(msgspec.Struct):
    text: str


def make_agent() -> tuple[Agent, CapabilityRegistry, list[str]]:
    reg = CapabilityRegistry()
    agent = Agent("greeter", registry=reg)
    calls: list[str] = []

    @agent.capability("greeter.greet")
    async def greet(g: Greeting, ctx) -> Reply:
        calls.append(g.name)
        if g.name == "boom":
            raise RuntimeError("the handler fell over")
        return Reply(text=" ".join([f"hello {g.name}"] * g.times))

    return agent, reg, calls


async def test_request_ack_response_land_in_order(bus, ledger):
    agent, reg, _ = make_agent()
    async with AgentRuntime(agent, bus), Recorder(bus, ledger) as rec:
        client = await Requester(bus, "tester", registry=reg).start()
        resp = await client.request("greeter", "greeter.greet", {"name": "ada", "times": 2}, timeout=5)
        assert resp.payload == {"text": "hello ada hello ada"}
        await rec.catch_up(holding=[resp.id])
    events = list(ledger.read())
    assert [e.envelope.action for e in events] == [Action.REQUEST, Action.ACK, Action.RESPONSE]
    positions = [e.position for e in events]
    assert positions == sorted(positions)
    req, ack, res = (e.envelope for e in events)
    assert ack.causation_id == req.id and res.causation_id == req.id
    assert {e.task_id for e in (req, ack, res)} == {req.task_id}


async def test_invalid_payload_gets_error_and_agent_keeps_serving(bus, ledger):
    agent, reg, calls = make_agent()
    async with AgentRuntime(agent, bus), Recorder(bus, ledger) as rec:
        client = await Requester(bus, "tester", registry=CapabilityRegistry()).start()  # no local validation
        bad = new_request(sender="tester", recipient="greeter", capability="greeter.greet", payload={"name": 42})
        answers = [a async for a in client.stream(bad, timeout=5)]
        assert [a.action for a in answers] == [Action.ERROR]
        err = answers[0].error
        assert err is not None and err.code == "INVALID_MESSAGE"
        assert "$.payload.name" in err.message and "str" in err.message
        ok = await client.request("greeter", "greeter.greet", {"name": "bob"}, timeout=5)
        assert ok.payload == {"text": "hello bob"}
        await rec.catch_up(holding=[answers[0].id, ok.id])
    assert calls == ["bob"]
    actions = [e.action.value for e in ledger.envelopes()]
    assert actions == ["REQUEST", "ERROR", "REQUEST", "ACK", "RESPONSE"]


async def test_handler_exception_becomes_error_and_agent_keeps_serving(bus):
    agent, reg, calls = make_agent()
    async with AgentRuntime(agent, bus):
        client = await Requester(bus, "tester", registry=reg).start()
        with pytest.raises(RemoteError) as info:
            await client.request("greeter", "greeter.greet", {"name": "boom"}, timeout=5)
        assert info.value.code == "HANDLER_ERROR"
        assert "RuntimeError: the handler fell over" in info.value.message
        ok = await client.request("greeter", "greeter.greet", {"name": "cy"}, timeout=5)
        assert ok.payload == {"text": "hello cy"}
    assert calls == ["boom", "cy"]


async def test_same_envelope_twice_is_stored_once(bus, ledger):
    env = new_request(sender="tester", recipient="nobody", capability="greeter.greet", payload={"name": "x"})
    first = await bus.publish(env)
    second = await bus.publish(env)
    assert not first.duplicate and second.duplicate
    assert first.seq == second.seq
    info = await bus.js.stream_info(bus.subjects.stream)
    assert info.state.messages == 1
    async with Recorder(bus, ledger) as rec:
        await rec.catch_up()
    # Outside JetStream's window the store still refuses a second copy of the same id.
    from ledgerbus.eventstore.base import StoredEvent

    assert ledger.append([StoredEvent(999, env)]) == 0
    assert [e.id for e in ledger.envelopes()] == [env.id]


async def test_recorder_restart_neither_skips_nor_duplicates(bus, ledger):
    def env(i: int):
        return new_request(sender="tester", recipient="sink", capability="sink.put", payload={"i": i})

    rec = await Recorder(bus, ledger, batch=7).start()
    for i in range(25):
        await bus.publish(env(i))
    await rec.catch_up()
    await rec.stop()
    for i in range(25, 60):  # published while no recorder runs
        await bus.publish(env(i))
    async with Recorder(bus, ledger, batch=7) as rec2:
        last = await rec2.catch_up()
    seen = [e.envelope.payload["i"] for e in ledger.read()]
    assert seen == list(range(60))
    assert [e.position for e in ledger.read()] == list(range(1, last + 1))
    assert ledger.checkpoint() == last


async def test_catch_up_waits_for_envelopes_the_caller_holds(bus, ledger):
    def env(i: int):
        return new_request(sender="tester", recipient="sink", capability="sink.put", payload={"i": i})

    first, later = env(1), env(2)
    await bus.publish(first)
    rec = Recorder(bus, ledger)
    # `later` is not in the stream when catch_up reads its last sequence, as an answer that core NATS
    # delivered before JetStream stored it would not be.
    waiting = asyncio.create_task(rec.catch_up(timeout=10, holding=[first.id, later.id]))
    await rec.start()
    try:
        await rec.wait_for(1, timeout=5)
        done, _ = await asyncio.wait({waiting}, timeout=0.5)
        assert not done, "catch_up returned without the envelope it was told to wait for"
        await bus.publish(later)
        assert await asyncio.wait_for(waiting, 10) == 2
        assert ledger.holds([first.id, later.id, "not-an-id"]) == {first.id, later.id}
        with pytest.raises(TimeoutError):
            await rec.catch_up(timeout=0.3, holding=[env(3).id])
    finally:
        await rec.stop()


async def test_fold_of_sqlite_ledger_equals_live_state(bus, ledger):
    from ledgerbus.examples import AGENTS, ARTICLE, ContentPipeline, register
    from ledgerbus.orchestrator.engine import Orchestrator

    register()

    runtimes = [AgentRuntime(a, bus) for a in AGENTS]
    async with Recorder(bus, ledger) as rec:
        await asyncio.gather(*(r.start() for r in runtimes))
        async with Orchestrator(bus, decomposer=ContentPipeline()) as orch:
            result = await orch.run(ARTICLE, {"topic": "circuit breakers", "subtopics": 2})
        await asyncio.gather(*(r.stop() for r in runtimes))
        await rec.catch_up()
    assert result.ok and result.result is not None and result.result["title"]
    replayed = fold(ledger.envelopes(result.conversation_id))
    live = result.state

    def comparable(st):
        # Times are each observer's (the orchestrator's clock live, JetStream's stored times replayed).
        data = msgspec.to_builtins(st)
        for t in data["tasks"].values():
            t.pop("last_position", None)
            for k in ("requested_at", "sent_at", "acked_at", "last_activity_at", "finished_at"):
                t.pop(k, None)
            for d in [*t["decisions"], *t["late"], *([t["answered"]] if t["answered"] else [])]:
                d.pop("position", None)
                d.pop("timestamp", None)
        for k in ("last_position", "started_at", "ended_at", "last_timestamp"):
            data.pop(k, None)
        return data

    assert comparable(replayed) == comparable(live)
    assert {t.status for t in replayed.tasks.values()} == {TaskStatus.DONE}
    assert len(replayed.tasks) == 1 + 2 + 2  # root, two research angles, write, edit


async def test_unreachable_server_is_a_clear_error_not_a_hang():
    from ledgerbus.bus.connection import Bus
    from ledgerbus.bus.server import free_port
    from ledgerbus.errors import ServerError

    url = f"nats://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(ServerError, match="cannot connect to NATS at " + url):
        await asyncio.wait_for(Bus.connect(url), 10)


async def test_empty_private_registry_is_used_not_replaced_by_the_global_one(bus):
    from ledgerbus.errors import UnknownCapability

    client = Requester(bus, "tester", registry=CapabilityRegistry())
    assert len(client.registry) == 0
    with pytest.raises(UnknownCapability):
        client.build("greeter", "greeter.greet", Greeting(name="x"))  # a typed payload needs a known capability


async def test_recorder_survives_a_failing_write_and_loses_nothing(bus, ledger):
    import sqlite3

    for i in range(5):
        await bus.publish(new_request(sender="tester", recipient="sink", capability="sink.put", payload={"i": i}))
    real_append = ledger.append
    failures = {"left": 2}

    def flaky_append(*args, **kwargs):
        if failures["left"]:
            failures["left"] -= 1
            raise sqlite3.OperationalError("database or disk is full")
        return real_append(*args, **kwargs)

    ledger.append = flaky_append  # the storage fails, not the bus: a real server still feeds the recorder
    async with Recorder(bus, ledger) as rec:
        await rec.catch_up(timeout=10)
        assert rec.write_errors == 2
    assert [e.envelope.payload["i"] for e in ledger.read()] == list(range(5))


def test_server_config_accepts_a_string_path(tmp_path):
    from ledgerbus.bus.server import ServerConfig

    assert ServerConfig(data_dir=str(tmp_path)).data_dir == tmp_path


async def test_recorder_tells_a_real_gap_from_a_fetch_that_failed_for_now(bus, ledger):
    import nats.errors

    from ledgerbus.eventstore.recorder import _Retry

    for i in range(3):
        await bus.publish(new_request(sender="tester", recipient="sink", capability="sink.put", payload={"i": i}))
    await bus.js.delete_msg(bus.subjects.stream, 2)  # gone for real (as retention would remove it)
    rec = Recorder(bus, ledger)
    events, rejects = [], []
    await rec._fill(1, 2, events, rejects)
    assert [e.position for e in events] == [1] and rec.gaps == [(2, 2)]

    real_get = bus.js.get_msg

    async def unreachable(*a, **kw):
        raise nats.errors.TimeoutError  # the server is restarting: not "gone"

    bus.js.get_msg = unreachable
    try:
        with pytest.raises(_Retry):
            await rec._fill(3, 3, [], [])
    finally:
        bus.js.get_msg = real_get
    assert rec.gaps == [(2, 2)]  # no gap invented for sequence 3
    async with Recorder(bus, ledger) as live:
        await live.catch_up()
    assert [e.position for e in ledger.read()] == [1, 3]
