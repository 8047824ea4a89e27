"""Span details beyond the tree: a handler's own child spans, fallbacks as events, a failed publish,
and an unsampled conversation that still carries its trace context everywhere."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import SpanKind, StatusCode

import ledgerbus.tracing as tracing
from ledgerbus.agents.runtime import AgentRuntime
from ledgerbus.agents.sdk import Agent, AgentError
from ledgerbus.bus.connection import Bus
from ledgerbus.eventstore.recorder import Recorder
from ledgerbus.orchestrator.backoff import RetryPolicy
from ledgerbus.orchestrator.engine import Orchestrator
from ledgerbus.orchestrator.policy import FallbackValue, PolicySet, TaskPolicy
from ledgerbus.schemas.capability import CapabilityRegistry
from ledgerbus.schemas.envelope import new_request
from tests.integration.tracing_world import FAST, Job, flaky_agent, memory_spans  # noqa: F401  (fixture)


class Note(msgspec.Struct):
    text: str


async def test_a_handler_adds_child_spans_under_its_process_span(bus, memory_spans):
    reg = CapabilityRegistry()
    agent = Agent("writer", registry=reg)

    @agent.capability("writer.note")
    async def note(job: Job, ctx) -> Note:  # type: ignore[no-untyped-def]
        ctx.span.set_attribute("writer.words", len(job.text.split()))
        with tracing.span("llm.complete", {"llm.model": "offline"}):
            pass
        return Note(text=job.text)

    async with AgentRuntime(agent, bus, announce=False):
        orch = await Orchestrator(bus, policies=FAST, registry=reg, use_directory=False).start()
        try:
            result = await orch.run("writer.note", {"text": "two words"})
        finally:
            await orch.stop()
    assert result.ok
    spans = memory_spans.get_finished_spans()
    process = next(s for s in spans if s.kind is SpanKind.CONSUMER)
    llm = next(s for s in spans if s.name == "llm.complete")
    assert process.attributes["writer.words"] == 2
    assert llm.parent.span_id == process.context.span_id
    assert llm.context.trace_id == process.context.trace_id
    assert llm.resource.attributes["service.name"] == "writer"


async def test_fallback_and_the_failure_before_it_are_events_with_codes(bus, ledger, memory_spans):
    reg = CapabilityRegistry()
    agent = Agent("broken", registry=reg)

    @agent.capability("broken.work")
    async def work(job: Job) -> Note:
        raise AgentError("UPSTREAM_DOWN", "the upstream service is down", retryable=True)

    policies = PolicySet(default=TaskPolicy(receipt_timeout=5, stall_after=5, timeout=10,
                                            retry=RetryPolicy(max_attempts=1),
                                            fallback=FallbackValue({"text": "cached"})))
    async with Recorder(bus, ledger) as rec, AgentRuntime(agent, bus, announce=False):
        orch = await Orchestrator(bus, policies=policies, registry=reg, use_directory=False).start()
        try:
            result = await orch.run("broken.work", {"text": "x"})
        finally:
            await orch.stop()
        await rec.catch_up()
    spans = memory_spans.get_finished_spans()
    root = next(s for s in spans if s.name == "conversation broken.work")
    events = [e.name for e in root.events]
    assert "FALLBACK_USED" in events
    fallback = next(e for e in root.events if e.name == "FALLBACK_USED")
    assert fallback.attributes["ledgerbus.error.code"] == "FALLBACK_USED"
    assert "UPSTREAM_DOWN" in fallback.attributes["message"]
    (process,) = [s for s in spans if s.kind is SpanKind.CONSUMER]
    assert process.status.status_code is StatusCode.ERROR and process.attributes["error.type"] == "UPSTREAM_DOWN"
    assert root.attributes["ledgerbus.outcome"] == result.outcome.status
    # The ledger rebuilds the same events.
    rebuilt = tracing.rebuild(ledger.envelopes(result.conversation_id), prefix=bus.subjects.prefix)
    assert [e.name for e in next(s for s in rebuilt if s.name == root.name).events] == events


async def test_a_failed_publish_marks_its_send_span(nats_server, memory_spans):
    bus = await Bus.connect(nats_server.url, prefix=nats_server.prefix)
    await bus.nc.close()
    env = new_request(sender="client", recipient="nobody", capability="nobody.home", payload={})
    with pytest.raises(Exception) as err:
        await bus.publish(env, timeout=0.5)
    await bus.close()
    (span,) = memory_spans.get_finished_spans()
    assert span.kind is SpanKind.PRODUCER
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == type(err.value).__qualname__


async def test_unsampled_conversations_record_nothing_but_carry_the_context(bus, ledger):
    exporter = InMemorySpanExporter()
    tracing.configure(exporter=exporter, batch=False, sampler=ParentBased(ALWAYS_OFF))
    try:
        reg = CapabilityRegistry()
        async with Recorder(bus, ledger) as rec, AgentRuntime(flaky_agent(reg), bus, announce=False):
            orch = await Orchestrator(bus, policies=FAST, registry=reg, use_directory=False).start()
            try:
                result = await orch.run("flaky.work", {"text": "quiet"})
            finally:
                await orch.stop()
            await rec.catch_up()
    finally:
        tracing.shutdown()
    assert result.ok
    assert exporter.get_finished_spans() == ()
    envelopes = ledger.envelopes(result.conversation_id)
    contexts = [tracing.parse_traceparent(e.traceparent) for e in envelopes]
    assert all(c is not None and not c.trace_flags.sampled for c in contexts)
    assert {c.trace_id for c in contexts} == {tracing.trace_id_for(result.conversation_id)}


async def test_a_stall_is_an_event_and_fails_the_conversation_span(bus, memory_spans):
    reg = CapabilityRegistry()
    agent = Agent("sleepy", registry=reg)
    release = asyncio.Event()

    @agent.capability("sleepy.work")
    async def work(job: Job) -> Note:
        await release.wait()  # ACKed, then silent: the orchestrator's stall rule fires
        return Note(text=job.text)

    policies = PolicySet(default=TaskPolicy(receipt_timeout=5, stall_after=0.2, timeout=10,
                                            retry=RetryPolicy(max_attempts=1)))
    runtime = await AgentRuntime(agent, bus, announce=False).start()
    orch = await Orchestrator(bus, policies=policies, registry=reg, use_directory=False).start()
    try:
        result = await orch.run("sleepy.work", {"text": "zzz"})
    finally:
        release.set()
        await orch.stop()
        await runtime.stop(drain=True, timeout=5)
    assert not result.ok
    spans = memory_spans.get_finished_spans()
    root = next(s for s in spans if s.name == "conversation sleepy.work")
    assert [e.name for e in root.events][:1] == ["STALLED"]
    stalled = root.events[0]
    assert stalled.attributes["ledgerbus.attempt"] == 1 and "silent" in stalled.attributes["message"]
    assert root.status.status_code is StatusCode.ERROR
    assert root.attributes["ledgerbus.outcome"] == "FAILED"
