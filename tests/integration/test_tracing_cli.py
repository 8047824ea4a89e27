"""`ledgerbus trace export` sends the live trace's exact shape and ids, rebuilt from the ledger alone;
`ledgerbus trace show` draws it; errors are one line with an exit code."""

from __future__ import annotations

from typer.testing import CliRunner

import ledgerbus.tracing as tracing
from ledgerbus.cli.main import app
from tests.integration.otlp_receiver import OtlpReceiver
from tests.integration.tracing_world import memory_spans, run_flaky_conversation  # noqa: F401  (fixture)

runner = CliRunner()




def _shape(spans: list[dict]) -> set[tuple[str, str, str, str]]:
    return {(s["span_id"], s["parent_id"], s["name"], s["service"]) for s in spans}


async def test_trace_export_of_a_recorded_ledger_matches_the_live_run(bus, ledger, memory_spans, tmp_path):
    traced = await run_flaky_conversation(bus, ledger)
    tracing.shutdown()  # the export must not lean on anything the live run left in the process
    live_spans = memory_spans.get_finished_spans()
    expected = {(f"{s.context.span_id:016x}", f"{s.parent.span_id:016x}" if s.parent else "", s.name,
                 s.resource.attributes["service.name"]) for s in live_spans}

    with OtlpReceiver() as receiver:
        res = runner.invoke(app, ["trace", "export", str(ledger.path), "-c", traced.result.conversation_id,
                                  "--endpoint", receiver.endpoint, "--prefix", bus.subjects.prefix])
        assert res.exit_code == 0, res.output
        got = receiver.wait_for(len(live_spans))
    assert _shape(got) == expected
    assert {s["trace_id"] for s in got} == {f"{live_spans[0].context.trace_id:032x}"}
    assert all(s["attributes"]["ledgerbus.rebuilt"] is True for s in got)
    assert f"trace {live_spans[0].context.trace_id:032x}" in res.output


async def test_trace_show_draws_the_tree_with_the_failed_attempt(bus, ledger):
    traced = await run_flaky_conversation(bus, ledger)  # tracing off: the ledger alone is enough
    res = runner.invoke(app, ["trace", "show", str(ledger.path), "--prefix", bus.subjects.prefix])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0] == f"conversation {traced.result.conversation_id}"
    assert lines[1].startswith("send lb.orchestrator.REQUEST.{conversationId} (client)")
    assert lines[2].startswith("  conversation flaky.work (orchestrator) outcome=DONE")
    assert any(l.startswith("      process flaky.work (flaky) attempt=1 ERROR FLAKY") for l in lines)
    assert any(l.startswith("      process flaky.work (flaky) attempt=2 ") and "ERROR" not in l for l in lines)
    assert "    * RETRY_SCHEDULED" in lines

    res = runner.invoke(app, ["trace", "show", str(ledger.path), "--json", "--prefix", bus.subjects.prefix])
    assert res.exit_code == 0, res.output
    import json

    (conv,) = json.loads(res.output)
    assert conv["traceId"] == traced.result.conversation_id.replace("-", "")
    assert len(conv["spans"]) == len(traced.envelopes) + 3


async def test_trace_command_errors_are_one_line(bus, ledger, tmp_path):
    traced = await run_flaky_conversation(bus, ledger)
    missing = runner.invoke(app, ["trace", "show", str(tmp_path / "nope.db")])
    assert missing.exit_code == 2 and missing.output.strip() == f"error: no ledger at {tmp_path / 'nope.db'}"
    unknown = runner.invoke(app, ["trace", "show", str(ledger.path), "-c", "no-such-conversation"])
    assert unknown.exit_code == 1 and "no-such-conversation has no events" in unknown.output
    down = runner.invoke(app, ["trace", "export", str(ledger.path), "-c", traced.result.conversation_id,
                               "--endpoint", "http://127.0.0.1:9", "--timeout", "0.5"])
    assert down.exit_code == 2
    assert down.output.strip().splitlines() == [
        f"error: the OTLP collector at http://127.0.0.1:9 did not accept the spans of "
        f"{traced.result.conversation_id} (is Jaeger running?)"]


def test_trace_show_reads_the_live_ledger_stream(nats_server, tmp_path):
    """No SQLite file: the command reads the conversation from the LEDGER stream itself."""
    import asyncio

    from ledgerbus.bus.connection import Bus
    from ledgerbus.eventstore.sqlite import SQLiteEventStore

    async def record() -> str:
        bus = await Bus.connect(nats_server.url, prefix=nats_server.prefix)
        store = SQLiteEventStore(tmp_path / "ledger.db")
        try:
            return (await run_flaky_conversation(bus, store)).result.conversation_id
        finally:
            store.close()
            await bus.close()

    cid = asyncio.run(record())
    live = runner.invoke(app, ["trace", "show", "--url", nats_server.url, "--prefix", nats_server.prefix,
                               "-c", cid, "--ids"])
    assert live.exit_code == 0, live.output
    from_file = runner.invoke(app, ["trace", "show", str(tmp_path / "ledger.db"), "--prefix", nats_server.prefix,
                                    "-c", cid, "--ids"])
    assert live.output == from_file.output  # same envelopes, same spans, ids and durations
    assert f"trace {cid.replace('-', '')}" in live.output
