"""`ledgerbus trace export|show`: a recorded conversation as a trace, in Jaeger or in the terminal.

The spans are rebuilt from the ledger (envelope timestamps, causation ids, traceparents), with the
ids a live run gives them, so this works even if tracing was off when the conversation ran.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import typer

from ledgerbus.cli.common import JsonOption, console, fail

app = typer.Typer(help="Rebuild conversations' traces from a ledger: send them to Jaeger, or draw them.",
                  no_args_is_help=True)

LedgerArg = typer.Argument(..., help="SQLite ledger file (e.g. .ledgerbus/ledger.db)")
ConversationOpt = typer.Option([], "--conversation", "-c", help="conversation id (repeatable; default: all)")
PrefixOpt = typer.Option(None, "--prefix", envvar="LEDGERBUS_PREFIX", help="subject prefix the ledger was recorded with [default: lb]")
OrchestratorOpt = typer.Option("orchestrator", "--orchestrator", help="the orchestrator's address (its conversations get a root span)")


def _conversations(ledger: Path, ids: list[str]) -> list[tuple[str, list[Any]]]:
    from ledgerbus.errors import StoreError
    from ledgerbus.eventstore.sqlite import SQLiteEventStore

    try:
        store = SQLiteEventStore(ledger, readonly=True)
    except StoreError as exc:
        fail(str(exc), 2)
    try:
        out = []
        for cid in ids or store.conversation_ids():
            envs = store.envelopes(cid)
            if not envs:
                fail(f"conversation {cid} has no events in {ledger}")
            out.append((cid, envs))
        if not out:
            fail(f"{ledger} holds no conversations")
        return out
    finally:
        store.close()


@app.command("export")
def export(
    ledger: Path = LedgerArg,
    conversation: list[str] = ConversationOpt,
    endpoint: str = typer.Option(None, "--endpoint", envvar="OTEL_EXPORTER_OTLP_ENDPOINT",
                                 help="OTLP endpoint [default: http://localhost:4318, Jaeger's OTLP/HTTP port]"),
    prefix: str = PrefixOpt,
    orchestrator: str = OrchestratorOpt,
    timeout: float = typer.Option(10.0, "--timeout", min=0.1, help="seconds to wait for the collector"),
    ui: str = typer.Option("http://localhost:16686", "--ui", envvar="LEDGERBUS_JAEGER_UI", help="Jaeger UI, for the links printed"),
    as_json: bool = JsonOption,
) -> None:
    """Rebuild recorded conversations' spans from the ledger and send them over OTLP (to Jaeger).

    Spans rebuilt this way carry `ledgerbus.rebuilt=true`; their ids are those a live trace had.

    Examples:

      ledgerbus trace export .ledgerbus/ledger.db --conversation 0193…

      OTEL_EXPORTER_OTLP_PROTOCOL=grpc ledgerbus trace export ledger.db --endpoint http://jaeger:4317
    """
    from opentelemetry.sdk.trace.export import SpanExportResult

    from ledgerbus.errors import ConfigError
    from ledgerbus.tracing.rebuild import rebuild
    from ledgerbus.tracing.setup import otlp_exporter

    convs = _conversations(ledger, conversation)
    target = endpoint or "http://localhost:4318"
    # The SDK logs its own failure line; ours below says the same with the endpoint, once.
    logging.getLogger("opentelemetry.exporter").setLevel(logging.CRITICAL)
    try:
        exporter = otlp_exporter(os.environ, endpoint=target, timeout=timeout)
    except ConfigError as exc:
        fail(str(exc))
    report = []
    try:
        for cid, envs in convs:
            spans = rebuild(envs, prefix=prefix or "lb", orchestrator=orchestrator)
            if exporter.export(spans) is not SpanExportResult.SUCCESS:
                fail(f"the OTLP collector at {target} did not accept the spans of {cid} (is Jaeger running?)", 2)
            trace_id = f"{spans[0].context.trace_id:032x}"
            report.append({"conversationId": cid, "traceId": trace_id, "spans": len(spans),
                           "url": f"{ui.rstrip('/')}/trace/{trace_id}"})
    finally:
        exporter.shutdown()
    if as_json:
        from ledgerbus.cli.render import print_json

        print_json(console, report)
        return
    for r in report:
        console.print(f"exported {r['spans']} spans of conversation {r['conversationId']} to {target}: "
                      f"trace {r['traceId']}  {r['url']}", highlight=False, soft_wrap=True)


@app.command("show")
def show(
    ledger: Path = LedgerArg,
    conversation: list[str] = ConversationOpt,
    prefix: str = PrefixOpt,
    orchestrator: str = OrchestratorOpt,
    ids: bool = typer.Option(False, "--ids", help="print trace and span ids"),
    as_json: bool = JsonOption,
) -> None:
    """Draw a recorded conversation's trace in the terminal: who called whom, how long, what failed.

    Examples:

      ledgerbus trace show .ledgerbus/ledger.db -c 0193…

      ledgerbus trace show .ledgerbus/ledger.db --ids --json
    """
    from rich.text import Text

    from ledgerbus.tracing.rebuild import rebuild
    from ledgerbus.tracing.tree import TreeOptions, render

    out = []
    for cid, envs in _conversations(ledger, conversation):
        spans = rebuild(envs, prefix=prefix or "lb", orchestrator=orchestrator)
        if as_json:
            out.append({"conversationId": cid, "traceId": f"{spans[0].context.trace_id:032x}",
                        "spans": [_span_json(s) for s in spans]})
            continue
        console.print(f"[bold]conversation {cid}[/]", highlight=False)
        for line in render(spans, TreeOptions(ids=ids, durations=True)).splitlines():
            console.print(Text(line, style="red" if " ERROR" in line else ""), soft_wrap=True)
    if as_json:
        from ledgerbus.cli.render import print_json

        print_json(console, out)


def _span_json(span: Any) -> dict[str, Any]:
    return {
        "name": span.name, "spanId": f"{span.context.span_id:016x}",
        "parentId": f"{span.parent.span_id:016x}" if span.parent else None,
        "service": span.resource.attributes.get("service.name"), "kind": span.kind.name,
        "start": span.start_time, "end": span.end_time, "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}), "events": [e.name for e in span.events],
    }
