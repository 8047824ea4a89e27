"""LightSpan: a full Span for user code, exported once, with user values validated like the SDK does."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Decision, ParentBased, Sampler, SamplingResult
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

import ledgerbus.tracing as tracing
from ledgerbus.tracing import setup, spans


@pytest.fixture
def exporter():
    exp = InMemorySpanExporter()
    tracing.configure(exporter=exp, batch=False)
    yield exp
    tracing.shutdown()


def _span(**kw) -> spans.LightSpan:
    return spans.start(setup.emitter("worker"), "process x", SpanKind.CONSUMER, parent_context=None, parent=None,
                       trace_id=7, span_id=9, attributes={"messaging.system": "nats"}, **kw)


class Opaque:
    __slots__ = ()


def test_user_values_are_cleaned_and_ours_kept(exporter):
    span = _span()
    span.set_attribute("llm.tokens", 12)
    span.set_attributes({"llm.stop": ["a", "b"], "odd": Opaque()})  # not an attribute value: stringified/dropped
    span.add_event("llm.retry", {"attempt": 2})
    span.end()
    (done,) = exporter.get_finished_spans()
    assert done.attributes["messaging.system"] == "nats"
    assert done.attributes["llm.tokens"] == 12 and done.attributes["llm.stop"] == ("a", "b")
    assert done.attributes["odd"] is None  # as the SDK does with a value it cannot represent
    assert [e.name for e in done.events] == ["llm.retry"] and done.events[0].attributes["attempt"] == 2
    assert (done.context.trace_id, done.context.span_id, done.kind) == (7, 9, SpanKind.CONSUMER)


def test_ended_once_and_ok_is_final(exporter):
    span = _span()
    span.set_status(Status(StatusCode.OK))
    span.set_status(StatusCode.ERROR, "too late")
    span.end()
    span.end()
    span.set_attribute("after", 1)  # ignored: no longer recording
    (done,) = exporter.get_finished_spans()
    assert done.status.status_code is StatusCode.OK and "after" not in done.attributes


def test_exceptions_become_events_and_use_span_sets_the_status(exporter):
    span = _span()
    with pytest.raises(ValueError):
        with trace.use_span(span, end_on_exit=True, record_exception=True, set_status_on_exception=True):
            assert trace.get_current_span() is span
            raise ValueError("bad input")
    (done,) = exporter.get_finished_spans()
    assert done.status.status_code is StatusCode.ERROR and "bad input" in done.status.description
    (event,) = done.events
    assert event.name == "exception" and event.attributes["exception.type"] == "ValueError"
    assert "Traceback" in event.attributes["exception.stacktrace"]


def test_unsampled_spans_export_nothing_but_keep_a_valid_context():
    exp = InMemorySpanExporter()
    tracing.configure(exporter=exp, batch=False, sampler=ParentBased(ALWAYS_OFF))
    try:
        span = _span()
        span.set_attribute("x", 1)
        span.end()
        assert not span.is_recording() and span.get_span_context().is_valid
        assert not span.get_span_context().trace_flags.sampled
        assert exp.get_finished_spans() == ()
    finally:
        tracing.shutdown()


def test_sdk_child_spans_nest_under_a_light_span(exporter):
    span = _span()
    with trace.use_span(span, end_on_exit=True):
        with tracing.span("child"):
            pass
    child, parent = exporter.get_finished_spans()
    assert child.parent.span_id == parent.context.span_id == 9 and child.context.trace_id == 7


class _DropSends(Sampler):
    """A user's own sampler: keeps everything but send spans (so it must be asked about every span)."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None, trace_state=None):
        self.asked.append(name)
        return SamplingResult(Decision.DROP if name.startswith("send ") else Decision.RECORD_AND_SAMPLE)

    def get_description(self) -> str:
        return "drop sends"


@contextmanager
def _traced(sampler) -> Iterator[InMemorySpanExporter]:
    exp = InMemorySpanExporter()
    tracing.configure(exporter=exp, batch=False, sampler=sampler)
    try:
        yield exp
    finally:
        tracing.shutdown()


def _parent_and_child_send() -> tuple[spans.LightSpan, spans.LightSpan]:
    """A process span, and the send span of an envelope published inside it (as an agent's ACK)."""
    parent = _span()
    with trace.use_span(parent, end_on_exit=True):
        child = spans.start(setup.emitter("worker"), "send lb.x.ACK.{conversationId}", SpanKind.PRODUCER,
                            parent_context=None, parent=parent.get_span_context(), trace_id=7, span_id=11,
                            attributes={"messaging.system": "nats"})
        child.end()
    return parent, child


@pytest.mark.parametrize("sampler", [ALWAYS_ON, ParentBased(ALWAYS_ON), ParentBased(ALWAYS_OFF)])
def test_children_of_a_local_sampled_span_follow_it(sampler):
    with _traced(sampler) as exp:
        parent, child = _parent_and_child_send()
        sampled = parent.get_span_context().trace_flags.sampled
        assert child.get_span_context().trace_flags.sampled == sampled  # ParentBased(ALWAYS_OFF): neither
        assert len(exp.get_finished_spans()) == (2 if sampled else 0)


def test_a_users_own_sampler_is_asked_about_every_span():
    sampler = _DropSends()
    with _traced(sampler) as exp:
        _, child = _parent_and_child_send()
        assert sampler.asked == ["process x", "send lb.x.ACK.{conversationId}"]
        assert not child.get_span_context().trace_flags.sampled
        assert [s.name for s in exp.get_finished_spans()] == ["process x"]


@pytest.mark.parametrize("flags, expect", [(TraceFlags.SAMPLED, True), (TraceFlags.DEFAULT, False)])
@pytest.mark.parametrize("sampler", [ParentBased(ALWAYS_OFF), "custom"])
def test_a_remote_parent_decides_as_the_sampler_would(sampler, flags, expect):
    own = _DropSends() if sampler == "custom" else None
    with _traced(own or sampler) as exp:
        remote = SpanContext(7, 5, is_remote=True, trace_flags=TraceFlags(flags))
        ctx = trace.set_span_in_context(trace.NonRecordingSpan(remote))
        span = spans.start(setup.emitter("worker"), "process x", SpanKind.CONSUMER, parent_context=ctx, parent=remote,
                           trace_id=7, span_id=13, attributes={})
        span.end()
        if own is not None:
            assert own.asked == ["process x"]  # asked whatever the parent says, and it keeps process spans
            assert span.get_span_context().trace_flags.sampled
        else:
            assert span.get_span_context().trace_flags.sampled is expect
            assert len(exp.get_finished_spans()) == int(expect)
