"""Issue 18.4: one conductor per conversation, whatever else runs under the orchestrator's name.

Every test counts from the ledger: each task REQUESTed once, one final answer (root RESPONSE) per
conversation — where two conductors would send every task twice and answer twice.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from ledgerbus.agents.runtime import AgentRuntime
from ledgerbus.bus.connection import Bus
from ledgerbus.bus.streams import consumer_name
from ledgerbus.eventstore.base import EventFilter
from ledgerbus.eventstore.fold import ConversationStatus, fold
from ledgerbus.eventstore.recorder import Recorder
from ledgerbus.errors import ConfigError
from ledgerbus.orchestrator.engine import Orchestrator
from ledgerbus.orchestrator.plan import Step
from ledgerbus.orchestrator.policy import PolicySet, RateLimitPolicy, TaskPolicy
from ledgerbus.orchestrator.replaymodes import fork
from ledgerbus.schemas.capability import CapabilityRegistry
from ledgerbus.schemas.codes import Action

from orchestration_harness import FixedPlan, counting_agent, start_all, stop_all, wait_until

# Generous windows: a slow ACK on a loaded machine must not become a retry the counts below would see.
PATIENT = PolicySet(default=TaskPolicy(receipt_timeout=15.0, stall_after=30.0, timeout=60.0),
                    rate=RateLimitPolicy(global_rate=None, agent_rate=None))
PLAN = FixedPlan([Step("a1", "worka.work", {}), Step("a2", "worka.work", {}),
                  Step("b", "workb.work", {}, depends_on=("a1", "a2"))], capabilities=("test.chain",))
TASKS = 3


def registry() -> CapabilityRegistry:
    reg = CapabilityRegistry()
    reg.register("test.chain")
    return reg


def make(bus: Bus, reg: CapabilityRegistry) -> Orchestrator:
    return Orchestrator(bus, decomposer=PLAN, policies=PATIENT, registry=reg, use_directory=False, lease=1.0)


def tally(events: list) -> tuple[Counter[str], int]:
    """(REQUESTs per task, final answers to the root) of one conversation's events."""
    state = fold(events)
    requests = Counter(e.task_id for e in events if e.action is Action.REQUEST and e.task_id != state.root_task_id)
    finals = sum(1 for e in events if e.task_id == state.root_task_id and e.action in (Action.RESPONSE, Action.ERROR))
    return requests, finals


def assert_conducted_once(ledger, cid: str) -> None:
    events = ledger.envelopes(cid)
    requests, finals = tally(events)
    assert fold(events).status is ConversationStatus.DONE
    assert len(requests) == TASKS and set(requests.values()) == {1}, requests
    assert finals == 1, [(e.sender, e.action.value) for e in events if e.task_id == fold(events).root_task_id]


async def drained(bus: Bus, name: str = "orchestrator", timeout: float = 15.0) -> None:
    """Wait until the service's consumer holds nothing: every root REQUEST delivered and acked."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        info = await bus.js.consumer_info(bus.subjects.stream, consumer_name(name))
        if info.num_pending == 0 and info.num_ack_pending == 0:
            return
        if loop.time() > end:
            raise AssertionError(f"the service's consumer still holds {info.num_pending} + {info.num_ack_pending}")
        await asyncio.sleep(0.05)


@asynccontextmanager
async def service(url: str, prefix: str, reg: CapabilityRegistry) -> AsyncIterator[Orchestrator]:
    """A same-named orchestrator service on its own connection, as another process would run it."""
    sbus = await Bus.connect(url, prefix=prefix, name="service")
    orch = make(sbus, reg)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(orch.serve(stop=stop, ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 15)
        yield orch
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        await orch.stop()
        await sbus.close()


@pytest.fixture
async def world(bus):
    reg, calls = registry(), Counter()
    runtimes = [AgentRuntime(counting_agent(n, lambda p, c: None, reg, calls), bus, announce=False)
                for n in ("worka", "workb")]
    await start_all(runtimes)
    yield reg, calls
    await stop_all(runtimes)


async def test_api_run_beside_a_same_named_service_conducts_each_conversation_once(nats_server, bus, ledger, world):
    reg, calls = world
    async with Recorder(bus, ledger) as rec, service(nats_server.url, nats_server.prefix, reg) as served:
        async with make(bus, reg) as api:
            results = await asyncio.wait_for(asyncio.gather(*(api.run("test.chain", {}) for _ in range(3))), 30)
        await drained(bus)  # the service was delivered each root, waited for run() to finish, and acked it
        await rec.catch_up()
    assert {r.status for r in results} == {ConversationStatus.DONE}
    for r in results:
        assert_conducted_once(ledger, r.conversation_id)
    assert served.sent_requests == 0
    assert set(calls.values()) == {1} and len(calls) == 3 * TASKS


async def test_fork_beside_the_service_conducts_the_fork_once(nats_server, bus, ledger, world):
    reg, calls = world
    async with Recorder(bus, ledger) as rec:
        async with make(bus, reg) as api:
            original = await api.run("test.chain", {"topic": "a"})
        await rec.catch_up()
        events = list(ledger.read(EventFilter(conversation_ids=(original.conversation_id,))))
        root_at = next(ev.position for ev in events if ev.envelope.task_id == original.state.root_task_id)
        async with service(nats_server.url, nats_server.prefix, reg) as served:
            report = await asyncio.wait_for(fork(bus, events, root_at, payload={"topic": "b"}, decomposer=PLAN,
                                                 policies=PATIENT), 30)
            await drained(bus)
        await rec.catch_up()
    assert report.result is not None and report.result.status is ConversationStatus.DONE
    assert_conducted_once(ledger, report.fork)
    assert served.sent_requests == 0


async def test_a_service_started_after_conversations_finished_conducts_none_of_them(nats_server, bus, ledger, world):
    reg, calls = world
    async with Recorder(bus, ledger) as rec:
        async with service(nats_server.url, nats_server.prefix, reg):
            pass  # the service's consumer now exists: roots published while no service runs queue in it
        async with make(bus, reg) as api:
            done = [await api.run("test.chain", {"n": i}) for i in range(2)]
        await rec.catch_up()
        events = list(ledger.read(EventFilter(conversation_ids=(done[0].conversation_id,))))
        root_at = next(ev.position for ev in events if ev.envelope.task_id == done[0].state.root_task_id)
        forked = await fork(bus, events, root_at, payload={"n": 9}, decomposer=PLAN, policies=PATIENT)
        info = await bus.js.consumer_info(bus.subjects.stream, consumer_name("orchestrator"))
        assert info.num_pending == 3  # run() (as in `demo`) and fork leave their roots where a later service sees them
        async with service(nats_server.url, nats_server.prefix, reg) as later:
            await drained(bus)
        await rec.catch_up()
    for cid in [d.conversation_id for d in done] + [forked.fork]:
        assert_conducted_once(ledger, cid)
    assert later.sent_requests == 0


async def test_run_and_fork_leave_no_consumer_for_a_service_on_a_fresh_deployment(bus, ledger, world):
    """Their own root REQUESTs are not for anyone to take: publishing them creates no orchestrator consumer."""
    reg, _ = world
    async with Recorder(bus, ledger) as rec:
        async with make(bus, reg) as api:
            done = await api.run("test.chain", {})
        await rec.catch_up()
        events = list(ledger.read(EventFilter(conversation_ids=(done.conversation_id,))))
        root_at = next(ev.position for ev in events if ev.envelope.task_id == done.state.root_task_id)
        await fork(bus, events, root_at, payload={"n": 1}, decomposer=PLAN, policies=PATIENT)
    names = [info.name for info in await bus.js.consumers_info(bus.subjects.stream)]
    assert consumer_name("orchestrator") not in names and consumer_name("worka") in names


async def test_run_refuses_a_conversation_id_that_was_conducted_already(bus, ledger, world):
    reg, _ = world
    async with make(bus, reg) as api:
        first = await api.run("test.chain", {})
        with pytest.raises(ConfigError, match="already been conducted"):
            await api.run("test.chain", {}, conversation_id=first.conversation_id)
    async with Recorder(bus, ledger) as rec:
        await rec.catch_up()
    assert_conducted_once(ledger, first.conversation_id)


async def test_a_conductor_that_lost_its_claim_stops(bus, world):
    """Taken over (its renewals were refused): the orchestrator stops conducting rather than go on beside the other."""
    from ledgerbus.errors import ConductorLost

    reg, calls = world
    gate = asyncio.Event()
    slow = counting_agent("slow", lambda p, c: gate.wait(), reg, calls)
    runtime = await AgentRuntime(slow, bus, announce=False).start()
    orch = Orchestrator(bus, decomposer=FixedPlan([Step("s", "slow.work", {})]), policies=PATIENT, registry=reg,
                        use_directory=False, lease=0.6)
    try:
        async with orch:
            running = asyncio.ensure_future(orch.run("test.chain", {}))
            await wait_until(lambda: bool(orch.runs), 10, "the conversation to start")
            cid = next(iter(orch.runs))
            kv = await orch.conductors.bucket()
            entry = await kv.get(cid)
            await kv.update(cid, b'{"holder":"usurper","orchestrator":"orchestrator","lease":60}', last=entry.revision)
            with pytest.raises(ConductorLost):
                await asyncio.wait_for(running, 10)
            assert cid not in orch.runs
    finally:
        gate.set()
        await runtime.stop()
