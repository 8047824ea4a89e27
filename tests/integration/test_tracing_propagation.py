"""Propagation to an agent not written with ledgerbus: a plain nats-py subscriber reads `traceparent`
from the NATS headers with the stock W3C propagator, and its answer continues the trace."""

from __future__ import annotations

import asyncio
import json

import nats
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

import ledgerbus.tracing as tracing
from ledgerbus.bus.requester import Requester
from ledgerbus.eventstore.recorder import Recorder
from ledgerbus.ids import now_ms, uuid7
from ledgerbus.schemas.capability import CapabilityRegistry
from tests.integration.tracing_world import memory_spans  # noqa: F401  (fixture)




async def test_plain_nats_subscriber_continues_the_trace(nats_server, bus, ledger, memory_spans):
    prefix = bus.subjects.prefix
    # The foreign agent: its own OpenTelemetry setup, no ledgerbus code at all.
    theirs = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "plain-py"}))
    provider.add_span_processor(SimpleSpanProcessor(theirs))
    their_tracer = provider.get_tracer("plain")
    w3c = TraceContextTextMapPropagator()
    seen: asyncio.Queue[dict[str, str]] = asyncio.Queue()

    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()

    async def on_request(msg) -> None:  # type: ignore[no-untyped-def]
        headers = dict(msg.headers or {})
        await seen.put(headers)
        req = json.loads(msg.data)
        with their_tracer.start_as_current_span("plain handle", context=w3c.extract(headers),
                                                kind=SpanKind.CONSUMER) as span:
            carrier: dict[str, str] = {}
            w3c.inject(carrier)
            answer = {
                "id": uuid7(), "conversationId": req["conversationId"], "taskId": req["taskId"],
                "causationId": req["id"], "sender": "plain", "recipient": req["replyTo"] or req["sender"],
                "action": "RESPONSE", "capability": req["capability"], "payload": {"echo": req["payload"]["text"]},
                "attempt": req["attempt"], "timestamp": now_ms(), "traceparent": carrier["traceparent"],
            }
            subject = f"{prefix}.{answer['recipient']}.RESPONSE.{req['conversationId']}"
            await js.publish(subject, json.dumps(answer).encode(),
                             headers={"Nats-Msg-Id": answer["id"], **carrier})
            span.set_attribute("answered", answer["id"])

    sub = await nc.subscribe(f"{prefix}.plain.REQUEST.>", cb=on_request)
    try:
        async with Recorder(bus, ledger) as rec:
            client = await Requester(bus, "tester", registry=CapabilityRegistry()).start()
            resp = await client.request("plain", "plain.echo", {"text": "hi"}, timeout=5)
            await client.stop()
            await rec.catch_up(holding=[resp.id])
    finally:
        await sub.unsubscribe()
        await nc.close()

    assert resp.payload == {"echo": "hi"}
    headers = seen.get_nowait()
    our_send = next(s for s in memory_spans.get_finished_spans() if s.kind is SpanKind.PRODUCER)
    ctx = our_send.context
    # The header is plain W3C: what any OpenTelemetry SDK reads.
    assert headers["traceparent"] == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01"

    (their_span,) = theirs.get_finished_spans()
    assert their_span.context.trace_id == ctx.trace_id
    assert their_span.parent.span_id == ctx.span_id
    assert their_span.parent.is_remote

    # Its answer, in the ledger, carries the trace on: same trace id, its own span as parent.
    request, response = ledger.envelopes(resp.conversation_id)
    assert response.sender == "plain"
    parsed = tracing.parse_traceparent(response.traceparent)
    assert parsed is not None
    assert (parsed.trace_id, parsed.span_id) == (ctx.trace_id, their_span.context.span_id)
    provider.shutdown()
