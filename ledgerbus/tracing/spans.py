"""LightSpan: the spans ledgerbus makes on every message, recorded without the SDK's Span object.

The SDK validates every attribute of every span; on a send or process span that is most of the cost
of tracing a step. ledgerbus's own attributes are known-good strings and ints, so a LightSpan keeps
them as given and validates only what user code adds (`ctx.span.set_attribute(...)`). It follows the
SDK's sampler, ends once, and hands a finished ReadableSpan to the span processors (export is
unchanged; processors' `on_start` is not called). It is a full `opentelemetry.trace.Span`, so
`trace.use_span` makes it current and SDK child spans nest under it.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context as OtelContext
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from ledgerbus.tracing.setup import Emitter

_UNSET = Status(StatusCode.UNSET)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)


class LightSpan(trace.Span):
    __slots__ = ("_name", "_context", "_parent", "_kind", "_attributes", "_user", "_events", "_links",
                 "_status", "_emitter", "_recording", "_start")

    def __init__(self, name: str, context: SpanContext, parent: SpanContext | None, kind: SpanKind,
                 attributes: dict[str, Any], emitter: Emitter | None, recording: bool,
                 links: Sequence[Link] = ()) -> None:
        self._name, self._context, self._parent, self._kind = name, context, parent, kind
        self._attributes = attributes
        self._user: dict[str, Any] | None = None
        # Most spans never get an event or a link: no list (one tracked object less per span) until one comes.
        self._events: list[Event] | None = None
        self._links: Sequence[Link] = links
        self._status = _UNSET
        self._emitter = emitter
        self._recording = recording and emitter is not None
        self._start = time.time_ns()

    # -- the Span API ------------------------------------------------------------------------

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._recording

    def set_attribute(self, key: str, value: Any) -> None:
        if self._recording:
            if self._user is None:
                self._user = {}
            self._user[key] = value

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None, timestamp: int | None = None) -> None:
        if self._recording:
            if self._events is None:
                self._events = []
            self._events.append(Event(name, BoundedAttributes(attributes=attributes), timestamp))

    def add_link(self, context: SpanContext, attributes: Mapping[str, Any] | None = None) -> None:
        if self._recording and context.is_valid:
            self._links = [*self._links, Link(context, BoundedAttributes(attributes=attributes))]

    def update_name(self, name: str) -> None:
        self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if not self._recording or self._status.status_code is StatusCode.OK:
            return  # as in the SDK: OK is final
        self._status = status if isinstance(status, Status) else Status(status, description)

    def record_exception(self, exception: BaseException, attributes: Mapping[str, Any] | None = None,
                         timestamp: int | None = None, escaped: bool = False) -> None:
        attrs: dict[str, Any] = {
            "exception.type": type(exception).__qualname__,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
            **(attributes or {}),
        }
        self.add_event("exception", attrs, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if not self._recording:
            return
        self._recording = False  # once: a PubAck callback and an error path may both get here
        em = self._emitter
        assert em is not None
        attrs = self._attributes if self._user is None else {**self._attributes, **BoundedAttributes(attributes=self._user)}
        span = ReadableSpan(self._name, context=self._context, parent=self._parent, resource=em.resource,
                            attributes=attrs, events=self._events or (), links=self._links, kind=self._kind,
                            status=self._status, start_time=self._start, end_time=end_time or time.time_ns(),
                            instrumentation_scope=em.scope)
        for proc in em.processors:
            proc.on_end(span)

    def fail(self, error_type: str, description: str) -> None:
        """Error status and `error.type` (ledgerbus's own values: no validation needed)."""
        if self._recording:
            self.set_status(Status(StatusCode.ERROR, description))
            self._attributes["error.type"] = error_type


def start(emitter: Emitter | None, name: str, kind: SpanKind, *, parent_context: OtelContext | None,
          parent: SpanContext | None, trace_id: int, span_id: int, attributes: dict[str, Any],
          links: Sequence[Link] = ()) -> LightSpan:
    """A LightSpan with the given ids, sampled the way the component's sampler says.

    `parent_context` is what the sampler sees (None: the current context); `parent` the parent's span
    context for the record. Not sampled, it still carries a valid context (flags 00) onward.
    """
    recording, sampled, state = False, False, parent.trace_state if parent is not None else None
    if emitter is not None and parent is not None and emitter.follows_local_parent and not parent.is_remote \
            and parent.trace_flags.sampled:
        recording = sampled = True  # what the sampler would say, without asking it (see Emitter)
    elif emitter is not None:
        result = emitter.sampler.should_sample(parent_context, trace_id, name, kind, attributes, links)
        recording, sampled, state = result.decision.is_recording(), result.decision.is_sampled(), result.trace_state
        if result.attributes:
            attributes.update(result.attributes)
    context = SpanContext(trace_id, span_id, is_remote=False, trace_flags=_SAMPLED if sampled else _NOT_SAMPLED,
                          trace_state=state)
    return LightSpan(name, context, parent, kind, attributes, emitter, recording, links)
