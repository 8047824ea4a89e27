"""The real OTLP/HTTP exporter, configured by the standard variables, against a local receiver that
decodes ExportTraceServiceRequest — the wire format Jaeger ingests on 4318."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan, Status as PbStatus

import ledgerbus.tracing as tracing
from tests.integration.otlp_receiver import OtlpReceiver
from tests.integration.tracing_world import run_flaky_conversation


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as rec:
        for name in ("OTEL_SERVICE_NAME", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                     "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_SDK_DISABLED"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rec.endpoint)
        monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_always_on")
        yield rec
        tracing.shutdown()


async def test_spans_arrive_over_otlp_http_with_services_ids_and_attributes(bus, ledger, receiver):
    assert tracing.configure_from_env() is True
    traced = await run_flaky_conversation(bus, ledger)
    assert tracing.force_flush()
    spans = receiver.wait_for(len(traced.envelopes) + 3)  # a send per envelope, two process, one conversation

    assert set(receiver.content_types) == {"application/x-protobuf"}
    assert len(spans) == len(traced.envelopes) + 3
    # Each component is its own service.
    assert {s["service"] for s in spans} == {"client", "orchestrator", "flaky"}
    assert {s["scope"] for s in spans} == {"ledgerbus"}
    # One trace: the conversation id, byte for byte.
    assert {s["trace_id"] for s in spans} == {traced.result.conversation_id.replace("-", "")}

    sends = {s["attributes"]["messaging.message.id"]: s for s in spans if s["kind"] == PbSpan.SPAN_KIND_PRODUCER}
    assert set(sends) == {e.id for e in traced.envelopes}
    request = next(e for e in traced.envelopes if e.recipient == "flaky" and e.attempt == 2)
    attrs = sends[request.id]["attributes"]
    assert attrs["messaging.system"] == "nats"
    assert attrs["messaging.operation.type"] == "send"
    assert attrs["messaging.destination.name"] == f"{bus.subjects.prefix}.flaky.REQUEST.{request.conversation_id}"
    assert attrs["messaging.destination.template"] == f"{bus.subjects.prefix}.flaky.REQUEST.{{conversationId}}"
    assert attrs["messaging.message.conversation_id"] == request.conversation_id
    assert (attrs["ledgerbus.task_id"], attrs["ledgerbus.attempt"], attrs["ledgerbus.action"],
            attrs["ledgerbus.capability"]) == (request.task_id, 2, "REQUEST", "flaky.work")
    assert sends[request.id]["service"] == "orchestrator"

    process = [s for s in spans if s["kind"] == PbSpan.SPAN_KIND_CONSUMER]
    assert {(p["attributes"]["ledgerbus.attempt"], p["status"]) for p in process} == {
        (1, PbStatus.STATUS_CODE_ERROR), (2, PbStatus.STATUS_CODE_UNSET)}
    assert all(p["service"] == "flaky" for p in process)
    second = next(p for p in process if p["attributes"]["ledgerbus.attempt"] == 2)
    assert second["parent_id"] == sends[request.id]["span_id"]
    root = next(s for s in spans if s["name"] == "conversation flaky.work")
    assert "RETRY_SCHEDULED" in root["events"]


async def test_otel_service_name_names_every_component_of_the_process(bus, ledger, receiver, monkeypatch):
    monkeypatch.setenv("OTEL_SERVICE_NAME", "one-box")
    tracing.configure_from_env()
    traced = await run_flaky_conversation(bus, ledger)
    tracing.force_flush()
    spans = receiver.wait_for(len(traced.envelopes) + 3)
    assert {s["service"] for s in spans} == {"one-box"}
    # The component is still told apart, as a resource attribute.
    assert {s["resource"]["ledgerbus.component"] for s in spans} == {"client", "orchestrator", "flaky"}
