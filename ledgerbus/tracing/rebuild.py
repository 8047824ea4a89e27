"""Rebuild a conversation's spans from its envelopes — pure, no I/O.

The ledger has everything a trace needs: who sent what to whom, when (envelope timestamps), which
envelope answers which (causationId), and the trace context (traceparent). Span ids are the ones a
live run gives (see `ids`), so a rebuilt trace has the same ids and shape as the live one, and
tracing need not have been on when the conversation ran. Rebuilt spans carry `ledgerbus.rebuilt`.

Shape (the same as live):
  send …REQUEST…                   the root REQUEST, published by the client (or by `run()` for it)
    conversation <capability>      the orchestrator handling it (root REQUEST → final answer)
      send …                       every envelope the orchestrator published
        process <capability>       an agent handling that REQUEST (first answer → final answer)
          send …                   what the agent published while handling it
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from ledgerbus._version import __version__
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import Envelope
from ledgerbus.tracing import conventions as C
from ledgerbus.tracing.ids import CONVERSATION, PROCESS, SEND, parse_traceparent, span_id_for, trace_id_for

_SCOPE = InstrumentationScope(C.INSTRUMENTATION, __version__)
_FINAL = (Action.RESPONSE, Action.ERROR)
_MS = 1_000_000


def _ns(ms: int) -> int:
    return ms * _MS


def _resource(component: str) -> Resource:
    # Not Resource.create: a rebuild must not pick up the exporting machine's OTEL_* settings.
    return Resource({SERVICE_NAME: component, C.LB_COMPONENT: component, C.LB_REBUILT: True})


def rebuild(envelopes: Sequence[Envelope], *, prefix: str = "lb", orchestrator: str = "orchestrator") -> list[ReadableSpan]:
    """The spans of one conversation, from its envelopes in ledger order."""
    if not envelopes:
        return []
    by_id = {e.id: e for e in envelopes}
    root = next((e for e in envelopes if e.action is Action.REQUEST), envelopes[0])
    sent = parse_traceparent(root.traceparent)
    trace_id = sent.trace_id if sent is not None else trace_id_for(root.conversation_id)
    flags = TraceFlags(TraceFlags.SAMPLED)

    def ctx(role: str, key: str) -> SpanContext:
        return SpanContext(trace_id, span_id_for(role, key), is_remote=False, trace_flags=flags)

    resources: dict[str, Resource] = {}

    def resource(component: str) -> Resource:
        r = resources.get(component)
        if r is None:
            r = resources[component] = _resource(component)
        return r

    orchestrated = root.action is Action.REQUEST and root.recipient == orchestrator
    root_ctx = ctx(CONVERSATION, root.conversation_id) if orchestrated else None
    spans: list[ReadableSpan] = []

    # Which agent handled which REQUEST: its own answers (decisions by the orchestrator are not handling).
    handled: dict[str, list[Envelope]] = {}
    for e in envelopes:
        req = by_id.get(e.causation_id or "")
        if e.action is not Action.REQUEST and req is not None and req.action is Action.REQUEST \
                and e.sender == req.recipient and not (orchestrated and req.id == root.id):
            handled.setdefault(req.id, []).append(e)

    def parent_of(e: Envelope) -> SpanContext | None:
        if e.id == root.id:
            return None
        if orchestrated and e.sender == orchestrator:
            return root_ctx
        cause = by_id.get(e.causation_id or "")
        if cause is not None and cause.id in handled and cause.recipient == e.sender:
            return ctx(PROCESS, cause.id)
        return root_ctx

    for e in envelopes:
        start = _ns(e.timestamp)
        spans.append(ReadableSpan(
            name=C.send_name(prefix, e), context=ctx(SEND, e.id), parent=parent_of(e),
            resource=resource(e.sender), attributes={**C.send_attributes(prefix, e), C.LB_REBUILT: True},
            kind=SpanKind.PRODUCER, start_time=start, end_time=start, instrumentation_scope=_SCOPE,
        ))

    for req_id, answers in handled.items():
        req = by_id[req_id]
        instance = next((str(a.payload.get("instance")) for a in answers
                         if a.action is Action.ACK and a.payload.get("instance")), None)
        final = next((a for a in reversed(answers) if a.action in _FINAL), None)
        status = Status(StatusCode.UNSET)
        attrs: dict[str, Any] = {**C.process_attributes(prefix, req, req.recipient, instance), C.LB_REBUILT: True}
        if final is not None and final.action is Action.ERROR:
            code = final.error.code if final.error else "ERROR"
            status = Status(StatusCode.ERROR, final.error.message if final.error else "")
            attrs[C.ERROR_TYPE] = code
        sender_ctx = ctx(SEND, req.id)
        spans.append(ReadableSpan(
            name=C.process_name(req.capability), context=ctx(PROCESS, req.id), parent=sender_ctx,
            resource=resource(req.recipient), attributes=attrs, links=[Link(sender_ctx)],
            kind=SpanKind.CONSUMER, start_time=_ns(min(a.timestamp for a in answers)),
            end_time=_ns(max(a.timestamp for a in answers)), status=status, instrumentation_scope=_SCOPE,
        ))

    if orchestrated and root_ctx is not None:
        spans.append(_conversation_span(root, envelopes, root_ctx, resource(orchestrator), orchestrator))
    return spans


def _conversation_span(root: Envelope, envelopes: Sequence[Envelope], context: SpanContext,
                       resource: Resource, orchestrator: str) -> ReadableSpan:
    mine = [e for e in envelopes if e.sender == orchestrator]
    events = []
    for e in mine:
        if e.error is not None:
            name, event_attrs = C.decision_event(e)
            events.append(Event(name, event_attrs, timestamp=_ns(e.timestamp)))
    final = next((e for e in reversed(mine) if e.task_id == root.task_id and e.action in _FINAL), None)
    attrs: dict[str, Any] = {**C.conversation_attributes(root), C.LB_REBUILT: True}
    status = Status(StatusCode.UNSET)
    if final is not None:
        attrs[C.LB_OUTCOME] = str((final.payload or {}).get("status")
                                  or ("FAILED" if final.action is Action.ERROR else "DONE"))
        if final.action is Action.ERROR:
            status = Status(StatusCode.ERROR, final.error.message if final.error else "failed")
            attrs[C.ERROR_TYPE] = final.error.code if final.error else "FAILED"
    end = final.timestamp if final is not None else max(e.timestamp for e in envelopes)
    return ReadableSpan(
        name=C.conversation_name(root.capability), context=context,
        parent=SpanContext(context.trace_id, span_id_for(SEND, root.id), is_remote=False, trace_flags=context.trace_flags),
        resource=resource, attributes=attrs, events=events, kind=SpanKind.SERVER, start_time=_ns(root.timestamp),
        end_time=_ns(end), status=status, instrumentation_scope=_SCOPE,
    )
