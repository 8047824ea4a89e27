"""Tracing configuration from the standard OTEL_* variables, and the off state costing nothing."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, TraceIdRatioBased

import ledgerbus.tracing as tracing
from ledgerbus.errors import ConfigError
from ledgerbus.schemas.envelope import new_request
from ledgerbus.tracing import instrument, setup


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch):
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER",
                 "OTEL_SDK_DISABLED", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_SERVICE_NAME",
                 "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"):
        monkeypatch.delenv(name, raising=False)
    tracing.shutdown()
    yield
    tracing.shutdown()


@pytest.mark.parametrize("env, want", [
    ({}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://jaeger:4318/v1/traces"}, True),
    ({"OTEL_TRACES_EXPORTER": "console"}, True),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"}, False),
    ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"}, False),
])
def test_tracing_is_on_only_when_the_environment_asks(env, want):
    assert setup.wanted(env) is want


def test_off_by_default_uses_the_noop_tracer_and_builds_nothing():
    assert tracing.enabled() is False
    assert isinstance(tracing.tracer("research"), trace.NoOpTracer)
    env = new_request(sender="client", recipient="research", capability="research.search", payload={})
    with instrument.send_span("lb", env) as headers:
        assert headers == {}
    assert env.traceparent is None  # nothing invented when off
    with instrument.process_span("lb", env, {}, agent="research") as span:
        assert span is trace.INVALID_SPAN


def test_off_still_carries_an_incoming_context_in_the_envelope():
    from ledgerbus.schemas.codes import Action
    from ledgerbus.schemas.envelope import answer

    req = new_request(sender="client", recipient="research", capability="research.search", payload={})
    req.traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert answer(req, Action.ACK).traceparent == req.traceparent


def test_configure_turns_it_on_in_process_and_shutdown_turns_it_off():
    exp = InMemorySpanExporter()
    tracing.configure(exporter=exp, batch=False)
    assert tracing.enabled()
    env = new_request(sender="client", recipient="research", capability="research.search", payload={})
    with instrument.send_span("lb", env) as headers:
        pass
    (span,) = exp.get_finished_spans()
    assert headers["traceparent"] == env.traceparent == \
        f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-01"
    assert span.resource.attributes["service.name"] == "client"
    tracing.shutdown()
    assert not tracing.enabled()


def test_unsampled_spans_carry_the_context_without_recording():
    exp = InMemorySpanExporter()
    tracing.configure(exporter=exp, batch=False, sampler=ParentBased(ALWAYS_OFF))
    env = new_request(sender="client", recipient="research", capability="research.search", payload={})
    with instrument.send_span("lb", env) as headers:
        pass
    assert exp.get_finished_spans() == ()
    assert headers["traceparent"].endswith("-00")  # context flows on, marked not sampled
    assert tracing.parse_traceparent(env.traceparent).trace_id == tracing.trace_id_for(env.conversation_id)


@pytest.mark.parametrize("env, expected", [
    ({}, ParentBased),
    ({"OTEL_TRACES_SAMPLER": "always_on"}, type(ALWAYS_ON)),
    ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"}, TraceIdRatioBased),
])
def test_sampler_from_env(env, expected):
    assert isinstance(setup.sampler_from_env(env), expected)


@pytest.mark.parametrize("env, words", [
    ({"OTEL_TRACES_SAMPLER": "sometimes"}, "unknown sampler 'sometimes'"),
    ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "lots"}, "must be a number in [0, 1]"),
    ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}, "must be a number in [0, 1]"),
])
def test_bad_sampler_settings_are_clear_errors(env, words):
    with pytest.raises(ConfigError, match=None) as err:
        setup.sampler_from_env(env)
    assert words in str(err.value)


def test_exporter_choice_from_env():
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    (exp,) = setup.exporters_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"})
    assert isinstance(exp, OTLPSpanExporter)
    assert exp._endpoint == "http://jaeger:4318/v1/traces"
    (exp,) = setup.exporters_from_env({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/custom"})
    assert exp._endpoint == "http://c:4318/custom"
    with pytest.raises(ConfigError, match="unknown exporter 'zipkin'"):
        setup.exporters_from_env({"OTEL_TRACES_EXPORTER": "zipkin"})
    with pytest.raises(ConfigError, match="unsupported protocol 'http/json'"):
        setup.exporters_from_env({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})


def test_grpc_is_optional():
    try:
        import opentelemetry.exporter.otlp.proto.grpc.trace_exporter  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="pip install 'ledgerbus\\[grpc\\]'"):
            setup.exporters_from_env({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    else:
        (exp,) = setup.exporters_from_env({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                                           "OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4317"})
        assert type(exp).__module__.startswith("opentelemetry.exporter.otlp.proto.grpc")


def test_a_bad_environment_leaves_tracing_off_instead_of_breaking_publishes(monkeypatch, caplog):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4318")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "sometimes")
    assert tracing.enabled() is False
    assert "tracing stays off" in caplog.text and "sometimes" in caplog.text
    with pytest.raises(ConfigError):
        tracing.configure_from_env()  # a command that asks explicitly gets the error


def test_service_name_override_and_component_attribute():
    exp = InMemorySpanExporter()
    tracing.configure(exporter=exp, batch=False, service_name="box")
    with tracing.span("llm.call", {"llm.model": "m"}):
        pass
    (span,) = exp.get_finished_spans()
    assert span.resource.attributes["service.name"] == "box"
    assert span.resource.attributes["ledgerbus.component"] == "ledgerbus"
    assert span.attributes["llm.model"] == "m"


def test_republishing_an_envelope_does_not_make_it_its_own_parent():
    exp = InMemorySpanExporter()
    tracing.configure(exporter=exp, batch=False)
    env = new_request(sender="client", recipient="research", capability="research.search", payload={})
    for _ in range(2):
        with instrument.send_span("lb", env):
            pass
    first, second = exp.get_finished_spans()
    assert first.context.span_id == second.context.span_id  # the same envelope, the same span id
    assert second.parent is None


def test_outside_any_span_the_envelope_context_is_the_parent():
    exp = InMemorySpanExporter()
    tracing.configure(exporter=exp, batch=False)
    env = new_request(sender="plain", recipient="research", capability="research.search", payload={})
    env.traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with instrument.send_span("lb", env):
        pass
    (span,) = exp.get_finished_spans()
    assert (span.context.trace_id, span.parent.span_id) == (0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331)


def test_tracestate_is_read_from_the_headers_and_passed_on():
    from ledgerbus.schemas.codes import Action
    from ledgerbus.schemas.envelope import answer

    exp = InMemorySpanExporter()
    tracing.configure(exporter=exp, batch=False)
    req = new_request(sender="orchestrator", recipient="research", capability="research.search", payload={})
    incoming = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                "tracestate": "congo=t61rcWkgMzE"}
    with instrument.process_span("lb", req, incoming, agent="research") as process:
        with instrument.send_span("lb", answer(req, Action.ACK)) as headers:
            pass
    assert headers["tracestate"] == "congo=t61rcWkgMzE"
    assert process.get_span_context().trace_state.get("congo") == "t61rcWkgMzE"
    ack, done = exp.get_finished_spans()
    assert done.kind is trace.SpanKind.CONSUMER and ack.parent.span_id == done.context.span_id
    assert done.parent.span_id == 0xB7AD6B7169203331
    assert [link.context.span_id for link in done.links] == [0xB7AD6B7169203331]
