"""The spans ledgerbus makes: a PRODUCER span per publish, a CONSUMER span per request an agent
handles, a root span per conversation. Called by the bus, the agent runtime and the orchestrator.

Every helper checks `setup.enabled()` first and does nothing when tracing is off. Off, the envelope still
carries whatever `traceparent` it came with (`answer()` copies the request's), so a trace started
elsewhere keeps flowing through a process that does not trace.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any, ContextManager

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context as OtelContext
from opentelemetry.trace import INVALID_SPAN, Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.span import TraceState

from ledgerbus.bus import headers as H
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import Envelope
from ledgerbus.tracing import conventions as C
from ledgerbus.tracing import setup, spans
from ledgerbus.tracing.spans import LightSpan
from ledgerbus.tracing.ids import (CONVERSATION, PROCESS, SEND, format_traceparent, parse_traceparent, preset,
                                   span_id_for, trace_id_for)

_NO_HEADERS: dict[str, str] = {}
_OFF: ContextManager[dict[str, str]] = nullcontext(_NO_HEADERS)
_OFF_SPAN: ContextManager[Span] = nullcontext(INVALID_SPAN)

#: The component (agent type or orchestrator) on whose behalf the current task works: names the
#: service of the spans it makes, whatever the envelope's sender field says.
_component: ContextVar[str | None] = ContextVar("ledgerbus_component", default=None)


def current_component() -> str | None:
    return _component.get()


def _parent_of(env: Envelope) -> tuple[OtelContext | None, trace.SpanContext | None]:
    """The current span, else the context the envelope already carries (a process that traces
    publishing outside any span, e.g. a plain client answering a traced request): the context the
    sampler sees (None: the current one) and the parent's span context."""
    current = trace.get_current_span().get_span_context()
    if current.is_valid:
        return None, current
    sc = parse_traceparent(env.traceparent)
    if sc is None or sc.span_id == span_id_for(SEND, env.id):
        return None, None  # nothing carried, or this envelope's own earlier send (a re-publish): not a parent
    return trace.set_span_in_context(trace.NonRecordingSpan(sc)), sc


def start_send(prefix: str, env: Envelope) -> tuple[LightSpan, dict[str, str]]:
    """Start the PRODUCER span of `env`, write its context into `env.traceparent`, return the headers."""
    parent_ctx, parent = _parent_of(env)
    span = spans.start(
        setup.emitter(_component.get() or env.sender), C.send_name(prefix, env), SpanKind.PRODUCER,
        parent_context=parent_ctx, parent=parent,
        trace_id=parent.trace_id if parent is not None else trace_id_for(env.conversation_id),
        span_id=span_id_for(SEND, env.id), attributes=C.send_attributes(prefix, env),
    )
    sc = span.get_span_context()
    env.traceparent = format_traceparent(sc)
    headers = {H.TRACEPARENT: env.traceparent}
    if sc.trace_state:
        headers[H.TRACESTATE] = sc.trace_state.to_header()
    return span, headers


def end_send(span: LightSpan, exc: BaseException | None) -> None:
    if exc is not None:
        span.record_exception(exc)
        span.fail(type(exc).__qualname__, f"{type(exc).__name__}: {exc}")
    span.end()


class _Send:
    __slots__ = ("prefix", "env", "span")

    def __init__(self, prefix: str, env: Envelope) -> None:
        self.prefix, self.env = prefix, env
        self.span: LightSpan | None = None

    def __enter__(self) -> dict[str, str]:
        self.span, headers = start_send(self.prefix, self.env)
        return headers

    def __exit__(self, et: Any, exc: BaseException | None, tb: Any) -> None:
        if self.span is not None:
            end_send(self.span, exc)


def send_span(prefix: str, env: Envelope) -> ContextManager[dict[str, str]]:
    """`with send_span(prefix, env) as headers:` publish `env` with these extra headers."""
    if not setup.enabled():
        return _OFF
    return _Send(prefix, env)


def end_send_when_acked(span: LightSpan, fut: "asyncio.Future[Any]") -> None:
    """A pipelined publish's span ends when its PubAck (or failure) arrives."""
    def done(f: "asyncio.Future[Any]") -> None:
        end_send(span, None if f.cancelled() else f.exception())

    fut.add_done_callback(done)


def _extract(headers: Mapping[str, str] | None, req: Envelope) -> trace.SpanContext | None:
    """The sender's context: the W3C headers, else the envelope's field (a sender that sets only one)."""
    sc = parse_traceparent(headers.get(H.TRACEPARENT)) if headers else None
    if sc is None:
        return parse_traceparent(req.traceparent)
    state = headers.get(H.TRACESTATE) if headers else None
    if state:
        sc = trace.SpanContext(sc.trace_id, sc.span_id, is_remote=True, trace_flags=sc.trace_flags,
                               trace_state=TraceState.from_header([state]))
    return sc


def process_span(prefix: str, req: Envelope, headers: Mapping[str, str] | None, *,
                 agent: str, instance: str | None = None) -> ContextManager[Span]:
    """The CONSUMER span of an agent handling `req`, current inside the block (it is `ctx.span`).

    Parent: the send span named by the message's traceparent header (or the envelope's field);
    the same context is also a link, as the messaging conventions ask of consumers.
    """
    if not setup.enabled():
        return _OFF_SPAN
    return _Process(prefix, req, headers, agent, instance)


class _Process:
    """What `trace.use_span(span, end_on_exit=True)` does, plus the component, without two generators:
    this runs once per message an agent handles."""

    __slots__ = ("span", "_token", "_component")

    def __init__(self, prefix: str, req: Envelope, headers: Mapping[str, str] | None, agent: str,
                 instance: str | None) -> None:
        sender = _extract(headers, req)
        # The sender's context, and nothing else: a handler task must not inherit an unrelated current span.
        parent_ctx = trace.set_span_in_context(trace.NonRecordingSpan(sender)) if sender is not None else OtelContext()
        self.span = spans.start(
            setup.emitter(agent), C.process_name(req.capability), SpanKind.CONSUMER,
            parent_context=parent_ctx, parent=sender,
            trace_id=sender.trace_id if sender is not None else trace_id_for(req.conversation_id),
            span_id=span_id_for(PROCESS, req.id), attributes=C.process_attributes(prefix, req, agent, instance),
            links=(Link(sender),) if sender is not None else (),
        )
        self._component = agent

    def __enter__(self) -> Span:
        self._token = (_component.set(self._component), otel_context.attach(trace.set_span_in_context(self.span)))
        return self.span

    def __exit__(self, et: Any, exc: BaseException | None, tb: Any) -> None:
        component, ctx = self._token
        otel_context.detach(ctx)
        _component.reset(component)
        span = self.span
        # As use_span: Exception subclasses only (a cancelled handler is not the handler's error).
        if isinstance(exc, Exception) and span.is_recording():
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        span.end()


def mark_error(code: str, message: str) -> None:
    """The current span failed with this ledgerbus error code (an agent answering ERROR)."""
    span = trace.get_current_span()
    if isinstance(span, LightSpan):
        span.fail(code, message)
    elif span.is_recording():
        span.set_status(Status(StatusCode.ERROR, message))
        span.set_attribute(C.ERROR_TYPE, code)


@contextmanager
def conversation_span(root: Envelope, component: str) -> Iterator[Span]:
    """The orchestrator's span of one conversation, under the send span of its root REQUEST (whoever
    published it: `run()` itself, or a client when the orchestrator serves); everything the
    orchestrator publishes for the conversation hangs below it."""
    if not setup.enabled():
        yield INVALID_SPAN
        return
    sent = parse_traceparent(root.traceparent)
    parent = trace.set_span_in_context(trace.NonRecordingSpan(sent)) if sent is not None else None
    token = _component.set(component)
    try:
        with preset(trace_id_for(root.conversation_id), span_id_for(CONVERSATION, root.conversation_id)):
            span = setup.tracer(component).start_span(
                C.conversation_name(root.capability), context=parent, kind=SpanKind.SERVER,
                attributes=C.conversation_attributes(root),
            )
        with trace.use_span(span, end_on_exit=True, record_exception=True, set_status_on_exception=True):
            yield span
    finally:
        _component.reset(token)


@contextmanager
def resume_span(root: Envelope, component: str) -> Iterator[Span]:
    """A resumed conversation: a new span in the original trace, under the original root span."""
    if not setup.enabled():
        yield INVALID_SPAN
        return
    sent = parse_traceparent(root.traceparent)
    trace_id = sent.trace_id if sent is not None else trace_id_for(root.conversation_id)
    original = trace.SpanContext(trace_id, span_id_for(CONVERSATION, root.conversation_id), is_remote=True,
                                 trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED))
    token = _component.set(component)
    try:
        span = setup.tracer(component).start_span(
            f"resume {root.capability}", context=trace.set_span_in_context(trace.NonRecordingSpan(original)),
            kind=SpanKind.INTERNAL, attributes=C.conversation_attributes(root),
        )
        with trace.use_span(span, end_on_exit=True, record_exception=True, set_status_on_exception=True):
            yield span
    finally:
        _component.reset(token)


def on_emit(env: Envelope, root_task_id: str | None = None) -> None:
    """The orchestrator published `env`: decisions become span events named by their code, and the
    conversation's final answer sets the root span's outcome."""
    if not setup.enabled():
        return
    span = trace.get_current_span()
    if not span.is_recording():
        return
    if env.error is not None:
        name, attrs = C.decision_event(env)
        span.add_event(name, attrs)
    if root_task_id is not None and env.task_id == root_task_id and env.action in (Action.RESPONSE, Action.ERROR):
        outcome = (env.payload or {}).get("status") or ("FAILED" if env.action is Action.ERROR else "DONE")
        span.set_attribute(C.LB_OUTCOME, str(outcome))
        if env.action is Action.ERROR:
            span.set_status(Status(StatusCode.ERROR, env.error.message if env.error else "failed"))
            span.set_attribute(C.ERROR_TYPE, env.error.code if env.error else "FAILED")


@contextmanager
def span(name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Span]:
    """A child span of the current one, in the current component's service — e.g. around an LLM call:

        with ledgerbus.tracing.span("llm.complete", {"llm.model": model}) as s: ...
    """
    component = _component.get() or "ledgerbus"
    with setup.tracer(component).start_as_current_span(name, attributes=dict(attributes or {})) as s:
        yield s
