"""Deterministic ids, traceparent parsing, rebuilding spans from envelopes, and drawing the tree."""

from __future__ import annotations

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from ledgerbus.ids import uuid7
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import Envelope, ErrorInfo, answer, new_request
from ledgerbus.tracing.ids import (CONVERSATION, PROCESS, SEND, format_traceparent, parse_traceparent, span_id_for,
                                   trace_id_for)
from ledgerbus.tracing.rebuild import rebuild
from ledgerbus.tracing.tree import TreeOptions, render


def test_a_uuid_conversation_id_is_its_own_trace_id():
    cid = uuid7()
    assert f"{trace_id_for(cid):032x}" == cid.replace("-", "")


def test_other_conversation_ids_hash_to_a_stable_nonzero_trace_id():
    assert trace_id_for("order-42") == trace_id_for("order-42") != trace_id_for("order-43")
    assert trace_id_for("order-42") > 0 and trace_id_for("0" * 32) > 0  # the all-zero id is invalid in W3C


def test_span_ids_differ_by_role_and_fit_64_bits():
    ids = {span_id_for(role, "x") for role in (SEND, PROCESS, CONVERSATION)}
    assert len(ids) == 3 and all(0 < i < 2**64 for i in ids)


@pytest.mark.parametrize("value", [
    None, "", "garbage", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",  # too short
    "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # zero trace id
    "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # zero span id
    "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # forbidden version
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",  # version 00 has no extra fields
])
def test_bad_traceparents_are_ignored_not_fatal(value):
    assert parse_traceparent(value) is None


def test_traceparent_round_trip():
    sc = parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    assert sc is not None and sc.is_remote and sc.trace_flags.sampled
    assert format_traceparent(sc) == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _failed_conversation() -> list[Envelope]:
    root = new_request(sender="client", recipient="orchestrator", capability="article.write", payload={})
    ack = answer(root, Action.ACK)
    task = new_request(sender="orchestrator", recipient="writer", capability="writer.draft", payload={},
                       conversation_id=root.conversation_id, causation_id=root.id)
    t_ack = answer(task, Action.ACK, payload={"instance": "writer-1"})
    t_err = answer(task, Action.ERROR, error=ErrorInfo(code="BAD_TOPIC", message="no such topic"))
    final = answer(root, Action.ERROR, error=ErrorInfo(code="DEPENDENCY_FAILED", message="step draft failed"))
    return [root, ack, task, t_ack, t_err, final]


def test_rebuilt_failed_conversation():
    envs = _failed_conversation()
    spans = rebuild(envs)
    assert render(spans) == """\
send lb.orchestrator.REQUEST.{conversationId} (client) attempt=1
  conversation article.write (orchestrator) outcome=FAILED ERROR DEPENDENCY_FAILED
    * DEPENDENCY_FAILED
    send lb.client.ACK.{conversationId} (orchestrator)
    send lb.writer.REQUEST.{conversationId} (orchestrator) attempt=1
      process writer.draft (writer) attempt=1 ERROR BAD_TOPIC
        send lb.orchestrator.ACK.{conversationId} (writer)
        send lb.orchestrator.ERROR.{conversationId} (writer) code=BAD_TOPIC
    send lb.client.ERROR.{conversationId} (orchestrator) code=DEPENDENCY_FAILED"""
    process = next(s for s in spans if s.kind is SpanKind.CONSUMER)
    assert process.attributes["ledgerbus.instance"] == "writer-1"
    assert process.status.status_code is StatusCode.ERROR
    assert process.start_time == envs[3].timestamp * 1_000_000 and process.end_time == envs[4].timestamp * 1_000_000
    assert {s.context.trace_id for s in spans} == {trace_id_for(envs[0].conversation_id)}
    assert all(s.attributes["ledgerbus.rebuilt"] for s in spans)


def test_a_conversation_without_an_orchestrator_has_no_conversation_span():
    req = new_request(sender="client", recipient="echo", capability="echo.say", payload={"text": "hi"})
    envs = [req, answer(req, Action.ACK), answer(req, Action.RESPONSE, payload={"text": "HI"})]
    assert render(rebuild(envs), TreeOptions(indent=". ")) == """\
send lb.echo.REQUEST.{conversationId} (client) attempt=1
. process echo.say (echo) attempt=1
. . send lb.client.ACK.{conversationId} (echo)
. . send lb.client.RESPONSE.{conversationId} (echo)"""


def test_a_trace_started_elsewhere_keeps_its_trace_id():
    envs = _failed_conversation()
    envs[0].traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert {s.context.trace_id for s in rebuild(envs)} == {0x0AF7651916CD43DD8448EB211C80319C}


def test_an_unanswered_request_has_a_send_span_but_no_process_span():
    req = new_request(sender="client", recipient="echo", capability="echo.say", payload={})
    (span,) = rebuild([req], prefix="t1")
    assert span.name == "send t1.echo.REQUEST.{conversationId}"
    assert span.attributes["messaging.destination.name"] == f"t1.echo.REQUEST.{req.conversation_id}"
    assert rebuild([]) == []


def test_render_with_ids_and_durations():
    spans = rebuild(_failed_conversation())
    text = render(spans, TreeOptions(ids=True, durations=True))
    first = text.splitlines()[0]
    assert first == f"trace {spans[0].context.trace_id:032x}"
    assert f"span={span_id_for(CONVERSATION, _conv(spans)):016x}" in text
    assert "ms" in text.splitlines()[2]


def _conv(spans) -> str:
    return next(s for s in spans if s.name.startswith("conversation")).attributes["ledgerbus.conversation_id"]


def test_render_survives_spans_that_loop_on_their_parents():
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext

    def ctx(i: int) -> SpanContext:
        return SpanContext(1, i, is_remote=False)

    spans = [ReadableSpan("self", context=ctx(1), parent=ctx(1)),
             ReadableSpan("a", context=ctx(2), parent=ctx(3)), ReadableSpan("b", context=ctx(3), parent=ctx(2))]
    lines = render(spans).splitlines()
    assert lines[0].startswith("self")
    assert sorted(line.split()[0] for line in lines) == ["a", "b", "self"]  # each once, none lost
