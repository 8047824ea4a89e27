"""One trace per conversation: the live span tree of a real conversation with a retried task, and the
same tree rebuilt from the recorded ledger."""

from __future__ import annotations

from opentelemetry.trace import SpanKind, StatusCode

import ledgerbus.tracing as tracing
from ledgerbus.agents.runtime import AgentRuntime
from ledgerbus.agents.sdk import Agent
from ledgerbus.eventstore.recorder import Recorder
from ledgerbus.orchestrator.engine import Orchestrator
from ledgerbus.schemas.capability import CapabilityRegistry
from ledgerbus.tracing.tree import TreeOptions, render
from tests.integration.tracing_world import (FAST, Job, by_message, memory_spans,  # noqa: F401  (fixture)
                                             run_flaky_conversation)

EXPECTED = """\
send lb.orchestrator.REQUEST.{conversationId} (client) attempt=1
  conversation flaky.work (orchestrator) outcome=DONE
    * RETRY_SCHEDULED
    send lb.client.ACK.{conversationId} (orchestrator)
    send lb.flaky.REQUEST.{conversationId} (orchestrator) attempt=1
      process flaky.work (flaky) attempt=1 ERROR FLAKY
        send lb.orchestrator.ACK.{conversationId} (flaky)
        send lb.orchestrator.ERROR.{conversationId} (flaky) code=FLAKY
    send lb.orchestrator.ERROR.{conversationId} (orchestrator) code=RETRY_SCHEDULED
    send lb.flaky.REQUEST.{conversationId} (orchestrator) attempt=2
      process flaky.work (flaky) attempt=2
        send lb.orchestrator.ACK.{conversationId} (flaky)
        send lb.orchestrator.RESPONSE.{conversationId} (flaky)
    send lb.client.RESPONSE.{conversationId} (orchestrator)"""




async def test_live_span_tree_of_a_retried_task(bus, ledger, memory_spans):
    traced = await run_flaky_conversation(bus, ledger)
    assert traced.result.ok, traced.result.outcome
    spans = memory_spans.get_finished_spans()

    assert render(spans) == EXPECTED, "\n" + render(spans)
    # One trace id for the whole conversation, and it is the conversation id.
    assert {s.context.trace_id for s in spans} == {tracing.trace_id_for(traced.result.conversation_id)}
    assert f"{spans[0].context.trace_id:032x}" == traced.result.conversation_id.replace("-", "")

    # A send span per envelope in the ledger, and each envelope carries its send span's context.
    sends = by_message(spans)
    assert set(sends) == {e.id for e in traced.envelopes}
    for env in traced.envelopes:
        ctx = sends[env.id].context
        assert env.traceparent == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01"
        assert sends[env.id].kind is SpanKind.PRODUCER

    # Each process span is a child of its REQUEST's send span, and linked to it.
    processes = [s for s in spans if s.kind is SpanKind.CONSUMER]
    assert len(processes) == 2
    for p in processes:
        req_send = sends[str(p.attributes["messaging.message.id"])]
        assert p.parent.span_id == req_send.context.span_id
        assert [link.context.span_id for link in p.links] == [req_send.context.span_id]
        assert p.attributes["messaging.system"] == "nats"
        assert p.attributes["messaging.consumer.group.name"] == "flaky"
    failed, ok = sorted(processes, key=lambda s: s.attributes["ledgerbus.attempt"])
    assert failed.status.status_code is StatusCode.ERROR and failed.attributes["error.type"] == "FLAKY"
    assert ok.status.status_code is StatusCode.UNSET

    # The orchestrator's decision is an event with its code on the conversation span.
    root = next(s for s in spans if s.name == "conversation flaky.work")
    event = next(e for e in root.events if e.name == "RETRY_SCHEDULED")
    assert event.attributes["ledgerbus.attempt"] == 1
    first = next(e for e in traced.envelopes if e.recipient == "flaky" and e.attempt == 1)
    assert event.attributes["ledgerbus.task_id"] == first.task_id
    assert root.attributes["ledgerbus.outcome"] == "DONE"


async def test_rebuilt_from_the_ledger_matches_the_live_trace(bus, ledger, memory_spans):
    traced = await run_flaky_conversation(bus, ledger)
    live = memory_spans.get_finished_spans()
    rebuilt = tracing.rebuild(traced.envelopes, prefix=bus.subjects.prefix)

    with_ids = TreeOptions(ids=True)
    assert render(rebuilt, with_ids) == render(live, with_ids), "\n" + render(rebuilt, with_ids)
    assert {(s.context.span_id, s.parent.span_id if s.parent else None) for s in rebuilt} == \
        {(s.context.span_id, s.parent.span_id if s.parent else None) for s in live}
    assert all(s.attributes["ledgerbus.rebuilt"] is True for s in rebuilt)


async def test_a_sub_request_nests_under_the_agent_that_asked_live_and_rebuilt(bus, ledger, memory_spans):
    reg = CapabilityRegistry()
    outer, inner = Agent("outer", registry=reg), Agent("inner", registry=reg)

    @inner.capability("inner.shout")
    async def shout(t: Job) -> Job:
        return Job(t.text.upper())

    @outer.capability("outer.ask")
    async def ask(t: Job, ctx) -> Job:  # type: ignore[no-untyped-def]
        return Job((await ctx.request("inner", "inner.shout", {"text": t.text}, timeout=5))["text"] + "!")

    async with Recorder(bus, ledger) as rec, AgentRuntime(outer, bus, announce=False), \
            AgentRuntime(inner, bus, announce=False):
        orch = await Orchestrator(bus, policies=FAST, registry=reg, use_directory=False).start()
        try:
            result = await orch.run("outer.ask", {"text": "hi"})
        finally:
            await orch.stop()
        await rec.catch_up()
    assert result.ok, result.outcome
    live = memory_spans.get_finished_spans()
    assert render(live) == """\
send lb.orchestrator.REQUEST.{conversationId} (client) attempt=1
  conversation outer.ask (orchestrator) outcome=DONE
    send lb.client.ACK.{conversationId} (orchestrator)
    send lb.outer.REQUEST.{conversationId} (orchestrator) attempt=1
      process outer.ask (outer) attempt=1
        send lb.orchestrator.ACK.{conversationId} (outer)
        send lb.inner.REQUEST.{conversationId} (outer) attempt=1
          process inner.shout (inner) attempt=1
            send lb.outer.ACK.{conversationId} (inner)
            send lb.outer.RESPONSE.{conversationId} (inner)
        send lb.orchestrator.RESPONSE.{conversationId} (outer)
    send lb.client.RESPONSE.{conversationId} (orchestrator)""", "\n" + render(live)
    rebuilt = tracing.rebuild(ledger.envelopes(result.conversation_id), prefix=bus.subjects.prefix)
    assert render(rebuilt, TreeOptions(ids=True)) == render(live, TreeOptions(ids=True))
