"""Replay modes: resimulate (determinism check), re-execute (budgeted), fork (original untouched)."""

from __future__ import annotations

import asyncio

import msgspec
from ledger_world import record_articles

from ledgerbus.agents.runtime import AgentRuntime
from ledgerbus.agents.sdk import Agent, AgentError
from ledgerbus.eventstore.base import EventFilter, StoredEvent
from ledgerbus.eventstore.fold import ConversationStatus, fold
from ledgerbus.eventstore.jetstream import JetStreamLedger
from ledgerbus.eventstore.recorder import Recorder
from ledgerbus.eventstore.timetravel import diff_conversations
from ledgerbus.orchestrator.backoff import Backoff, RetryPolicy
from ledgerbus.orchestrator.engine import Orchestrator
from ledgerbus.orchestrator.policy import PolicySet, TaskPolicy
from ledgerbus.orchestrator.replaymodes import fork, re_execute, resimulate
from ledgerbus.schemas.capability import CapabilityRegistry
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import new_request

FAST = PolicySet(default=TaskPolicy(receipt_timeout=1.0, stall_after=2.0, timeout=4.0,
                                    retry=RetryPolicy(max_attempts=3, backoff=Backoff(initial=0.01, cap=0.02))))


class Job(msgspec.Struct):
    n: int


async def record_flaky(bus, ledger) -> list[StoredEvent]:
    """One conversation whose only step fails once (retryable) and then succeeds."""
    reg = CapabilityRegistry()
    agent = Agent("flaky", registry=reg)
    calls: list[int] = []

    @agent.capability("flaky.do")
    async def do(job: Job, ctx) -> Job:
        calls.append(job.n)
        if len(calls) == 1:
            raise AgentError("UPSTREAM_DOWN", "the upstream said 503", retryable=True)
        return Job(job.n * 2)

    async with Recorder(bus, ledger) as rec, AgentRuntime(agent, bus):
        async with Orchestrator(bus, policies=FAST, registry=reg, use_directory=False) as orch:
            result = await orch.run("flaky.do", {"n": 21})
        await rec.catch_up()
    assert result.ok
    return list(ledger.read(EventFilter(conversation_ids=(result.conversation_id,))))


async def test_resimulate_unchanged_ledger_has_no_divergence(bus, ledger):
    events = await record_flaky(bus, ledger)
    codes = [e.envelope.error.code for e in events if e.envelope.error is not None]
    assert "RETRY_SCHEDULED" in codes
    report = await resimulate(events, policies=FAST, timeout=20)
    assert report.same, report.divergences
    assert report.requests == 2 and not report.unanswered


async def test_resimulate_reports_exactly_the_edited_decision(bus, ledger):
    events = await record_flaky(bus, ledger)
    i = next(k for k, e in enumerate(events)
             if e.envelope.error is not None and e.envelope.error.code == "RETRY_SCHEDULED")
    edited = msgspec.structs.replace(events[i].envelope,
                                     error=msgspec.structs.replace(events[i].envelope.error, code="DEAD_LETTER"))
    events[i] = StoredEvent(events[i].position, edited)
    report = await resimulate(events, policies=FAST, timeout=20)
    assert len(report.divergences) == 1, report.divergences
    d = report.divergences[0]
    assert d.field == "decisions" and d.recorded == [("DEAD_LETTER", 1)] and d.simulated == [("RETRY_SCHEDULED", 1)]


async def test_re_execute_sends_no_more_than_its_budget(bus, ledger):
    from ledgerbus.examples import AGENTS, ARTICLE, ContentPipeline, register

    register()
    root = new_request(sender="client", recipient="orchestrator", capability=ARTICLE,
                       payload={"topic": "write-ahead logs", "subtopics": 3})
    runtimes = [AgentRuntime(a, bus) for a in AGENTS]
    async with Recorder(bus, ledger) as rec:
        await bus.publish(root)  # the orchestrator that took it died before planning anything
        await rec.catch_up()
        events = list(ledger.read(EventFilter(conversation_ids=(root.conversation_id,))))
        await asyncio.gather(*(r.start() for r in runtimes))
        try:
            report = await re_execute(bus, events, max_requests=2, decomposer=ContentPipeline())
        finally:
            await asyncio.gather(*(r.stop() for r in runtimes))
        await rec.catch_up()
    sent = [e for e in ledger.read(EventFilter(conversation_ids=(root.conversation_id,), actions=("REQUEST",)))
            if e.envelope.sender == "orchestrator"]
    assert report.sent == 2 and len(sent) == 2  # 5 steps planned, 2 allowed
    assert report.refused and report.result is not None
    assert report.result.status is not ConversationStatus.DONE


async def test_fork_leaves_the_original_byte_identical(bus, ledger):
    from ledgerbus.examples import AGENTS, ContentPipeline, register

    register()
    [original] = await record_articles(bus, ledger, ["bloom filters"])
    cid = original.conversation_id
    before = [(e.position, e.raw) for e in ledger.read(EventFilter(conversation_ids=(cid,)))]
    live_before = [(e.position, e.raw) async for e in JetStreamLedger(bus).read(EventFilter(conversation_ids=(cid,)))]
    events = list(ledger.read(EventFilter(conversation_ids=(cid,))))
    ack = next(e for e in events if e.envelope.action is Action.ACK and e.envelope.task_id == cid)

    runtimes = [AgentRuntime(a, bus) for a in AGENTS]
    async with Recorder(bus, ledger) as rec:
        await asyncio.gather(*(r.start() for r in runtimes))
        try:
            report = await fork(bus, events, ack.position, payload={"topic": "cuckoo filters"},
                                decomposer=ContentPipeline())
        finally:
            await asyncio.gather(*(r.stop() for r in runtimes))
        await rec.catch_up()
    assert report.fork != cid and report.result is not None and report.result.ok
    assert report.result.result["topic"] == "cuckoo filters"
    assert [(e.position, e.raw) for e in ledger.read(EventFilter(conversation_ids=(cid,)))] == before
    live_after = [(e.position, e.raw) async for e in JetStreamLedger(bus).read(EventFilter(conversation_ids=(cid,)))]
    assert live_after == live_before
    assert ledger.verify().ok
    changes = {c.path: c for c in diff_conversations(fold(events), fold(ledger.envelopes(report.fork)))}
    assert changes["tasks.root.input.topic"].after == "cuckoo filters"



STALLY = PolicySet(default=TaskPolicy(receipt_timeout=1.0, stall_after=0.4, timeout=5.0,
                                      retry=RetryPolicy(max_attempts=2, backoff=Backoff(initial=0.01, cap=0.02))))


async def test_resimulate_keeps_the_recorded_clock_for_late_answers(bus, ledger):
    """Attempt 1 is ACKed, goes silent past the stall window, and answers late: the stall must replay too."""
    from ledgerbus.schemas.envelope import answer

    late: list[asyncio.Task] = []

    async def on_request(msg):
        req = bus.codec.decode(msg.data)
        await bus.publish(answer(req, Action.ACK))
        if req.attempt == 1:
            async def respond_late():
                await asyncio.sleep(1.2)
                await bus.publish(answer(req, Action.RESPONSE, payload={"n": 1}))
            late.append(asyncio.create_task(respond_late()))
        else:
            await bus.publish(answer(req, Action.RESPONSE, payload={"n": 2}))

    sub = await bus.nc.subscribe(f"{bus.subjects.prefix}.stally.REQUEST.>", cb=on_request)
    async with Recorder(bus, ledger) as rec:
        async with Orchestrator(bus, policies=STALLY, use_directory=False) as orch:
            result = await orch.run("stally.work", {"n": 0})
        await asyncio.gather(*late)
        await rec.catch_up()
    await sub.unsubscribe()
    assert result.ok
    events = list(ledger.read(EventFilter(conversation_ids=(result.conversation_id,))))
    codes = [e.envelope.error.code for e in events if e.envelope.error is not None]
    assert codes[:2] == ["STALLED", "RETRY_SCHEDULED"]
    assert events[-1].envelope.action is Action.RESPONSE and events[-1].envelope.attempt == 1  # the late answer
    report = await resimulate(events, policies=STALLY, timeout=20)
    assert report.same, report.divergences


async def test_an_answer_after_the_orchestrator_gave_up_is_late_and_resimulates_the_same(bus, ledger):
    """No retry: the agent ACKs, stalls, the orchestrator gives up on the conversation, and then the answer
    comes. The fold keeps the decision (the step STALLED, the answer late), so resimulate agrees."""
    from ledgerbus.eventstore.fold import TaskStatus
    from ledgerbus.schemas.envelope import answer

    given_up = PolicySet(default=TaskPolicy(receipt_timeout=1.0, stall_after=0.3, timeout=5.0,
                                            retry=RetryPolicy(max_attempts=1)))
    late: list[asyncio.Task] = []
    requests: list = []

    async def on_request(msg):
        req = bus.codec.decode(msg.data)
        requests.append(req)
        await bus.publish(answer(req, Action.ACK))

    sub = await bus.nc.subscribe(f"{bus.subjects.prefix}.slow.REQUEST.>", cb=on_request)
    async with Recorder(bus, ledger) as rec:
        async with Orchestrator(bus, policies=given_up, use_directory=False) as orch:
            result = await orch.run("slow.work", {"n": 0})
        (req,) = requests
        resp = answer(req, Action.RESPONSE, payload={"n": 1})
        await bus.publish(resp)  # after the conversation ended
        await rec.catch_up(holding=[resp.id])
    await sub.unsubscribe()
    events = list(ledger.read(EventFilter(conversation_ids=(result.conversation_id,))))
    assert events[-1].envelope.id == resp.id
    state = fold(events)
    assert state.status is ConversationStatus.FAILED
    task = state.tasks[req.task_id]
    assert task.status is TaskStatus.STALLED and task.result is None
    assert [(a.position, a.attempt, a.sender) for a in task.late] == [(events[-1].position, 1, req.recipient)]
    report = await resimulate(events, policies=given_up, timeout=20)
    assert report.same, report.divergences
