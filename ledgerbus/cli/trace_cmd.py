"""`ledgerbus trace export|show`: a recorded conversation as a trace, in Jaeger or in the terminal.

The spans are rebuilt from the ledger (envelope timestamps, causation ids, traceparents), with the
ids a live run gives them, so this works even if tracing was off when the conversation ran.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Optional

import typer

from ledgerbus.cli.common import DataDirOption, JsonOption, UrlOption, console, fail, run
from ledgerbus.cli.live import PrefixOption
from ledgerbus.cli.connopts import connection_options
from ledgerbus.cli.output import Format, JsonlOption, choose, emit

app = typer.Typer(help="Rebuild conversations' traces from a ledger: send them to Jaeger, or draw them.",
                  no_args_is_help=True)

LedgerArg = typer.Argument(None, help="SQLite ledger file (e.g. .ledgerbus/ledger.db); omitted: the live LEDGER stream")
ConversationOpt = typer.Option([], "--conversation", "-c",
                               help="conversation id or a unique prefix of one (repeatable; default: all)")
OrchestratorOpt = typer.Option("orchestrator", "--orchestrator", help="the orchestrator's address (its conversations get a root span)")

Conversations = list[tuple[str, list[Any]]]


async def _read(ledger: Path | None, url: str | None, data_dir: Path, prefix: str | None,
                ids: list[str]) -> tuple[str, Conversations]:
    from ledgerbus.cli.damaged import warn_damaged
    from ledgerbus.cli.idprefix import resolve
    from ledgerbus.cli.sources import open_source

    async with open_source(ledger, url, data_dir, prefix) as opened:
        source = opened.source
        ids = await resolve(source, ids)
        damaged: list[Any] = []
        if ids:
            convs = []
            for cid in ids:
                convs.append((cid, await source.envelopes(cid)))
                damaged += source.damaged
        else:
            # One pass, grouped: a conversation whose every event is damaged has nothing to draw.
            grouped: dict[str, list[Any]] = {}
            async for ev in source.read():
                grouped.setdefault(ev.envelope.conversation_id, []).append(ev.envelope)
            damaged += source.damaged
            convs = list(grouped.items())
    warn_damaged(damaged)
    return opened.prefix, convs


def _conversations(ledger: Path | None, ids: list[str], url: str | None, data_dir: Path,
                   prefix: str | None) -> tuple[str, Conversations]:
    """(subject prefix, [(conversation id, envelopes in ledger order)]) from a file or the live stream."""
    where = str(ledger) if ledger is not None else "the live ledger"
    found = run(_read(ledger, url, data_dir, prefix, ids))
    for cid, envs in found[1]:
        if not envs:
            fail(f"conversation {cid} has no events in {where}")
    if not found[1]:
        fail(f"{where} holds no conversations")
    return found


@app.command("export")
@connection_options
def export(
    ledger: Optional[Path] = LedgerArg,
    conversation: list[str] = ConversationOpt,
    endpoint: str = typer.Option(None, "--endpoint", envvar="OTEL_EXPORTER_OTLP_ENDPOINT",
                                 help="OTLP endpoint [default: http://localhost:4318, Jaeger's OTLP/HTTP port]"),
    orchestrator: str = OrchestratorOpt,
    url: str = UrlOption,
    data_dir: Path = DataDirOption,
    prefix: str = PrefixOption,
    timeout: float = typer.Option(10.0, "--timeout", min=0.1, help="seconds to wait for the collector"),
    ui: str = typer.Option("http://localhost:16686", "--ui", envvar="LEDGERBUS_JAEGER_UI",
                           help="Jaeger UI: each trace's link is printed when a Jaeger answers there"),
    as_json: bool = JsonOption,
) -> None:
    """Rebuild recorded conversations' spans from the ledger and send them over OTLP (to Jaeger).

    Spans rebuilt this way carry `ledgerbus.rebuilt=true`; their ids are those a live trace had. A link to
    each trace is printed when the Jaeger query service answers at --ui (any other collector: no link).

    Examples:

      ledgerbus trace export .ledgerbus/ledger.db --conversation 0193…

      ledgerbus trace export --url nats://localhost:4222 -c 0193…   (from the live LEDGER stream)

      OTEL_EXPORTER_OTLP_PROTOCOL=grpc ledgerbus trace export ledger.db --endpoint http://jaeger:4317
    """
    from opentelemetry.sdk.trace.export import SpanExportResult

    from ledgerbus.errors import ConfigError
    from ledgerbus.tracing.rebuild import rebuild
    from ledgerbus.tracing.setup import otlp_exporter

    prefix, convs = _conversations(ledger, conversation, url, data_dir, prefix)
    target = endpoint or "http://localhost:4318"
    # The SDK logs its own failure line; ours below says the same with the endpoint, once.
    logging.getLogger("opentelemetry.exporter").setLevel(logging.CRITICAL)
    try:
        exporter = otlp_exporter(os.environ, endpoint=target, timeout=timeout)
    except ConfigError as exc:
        fail(str(exc))
    report = []
    link = ui.rstrip("/") if is_jaeger(ui) else None
    try:
        for cid, envs in convs:
            spans = rebuild(envs, prefix=prefix, orchestrator=orchestrator)
            if exporter.export(spans) is not SpanExportResult.SUCCESS:
                fail(f"the OTLP collector at {target} did not accept the spans of {cid} (is Jaeger running?)", 2)
            trace_id = f"{spans[0].context.trace_id:032x}"
            report.append({"conversationId": cid, "traceId": trace_id, "spans": len(spans),
                           "url": f"{link}/trace/{trace_id}" if link else None})
    finally:
        exporter.shutdown()
    if as_json:
        emit(Format.JSON, report)
        return
    for r in report:
        console.print(f"exported {r['spans']} spans of conversation {r['conversationId']} to {target}: "
                      f"trace {r['traceId']}" + (f"  {r['url']}" if r["url"] else ""), highlight=False, soft_wrap=True)


def is_jaeger(ui: str, timeout: float = 1.0) -> bool:
    """Whether the Jaeger query service answers at `ui` (its /api/services is JSON with a `data` list)."""
    import json
    import urllib.request

    try:
        with urllib.request.urlopen(f"{ui.rstrip('/')}/api/services", timeout=timeout) as resp:
            body = json.loads(resp.read(1 << 20))
    except (OSError, ValueError):
        return False
    return isinstance(body, dict) and isinstance(body.get("data"), list)


@app.command("show")
@connection_options
def show(
    ledger: Optional[Path] = LedgerArg,
    conversation: list[str] = ConversationOpt,
    orchestrator: str = OrchestratorOpt,
    url: str = UrlOption,
    data_dir: Path = DataDirOption,
    prefix: str = PrefixOption,
    ids: bool = typer.Option(False, "--ids", help="print trace and span ids"),
    as_json: bool = JsonOption,
    as_jsonl: bool = JsonlOption,
) -> None:
    """Draw a recorded conversation's trace in the terminal: who called whom, how long, what failed.

    Examples:

      ledgerbus trace show .ledgerbus/ledger.db -c 0193…

      ledgerbus trace show .ledgerbus/ledger.db --ids --json

      ledgerbus trace show --url nats://localhost:4222 -c 0193…   (the live LEDGER stream)
    """
    from rich.text import Text

    from ledgerbus.tracing.rebuild import rebuild
    from ledgerbus.tracing.tree import TreeOptions, render

    fmt = choose(as_json, as_jsonl)
    out = []
    prefix, convs = _conversations(ledger, conversation, url, data_dir, prefix)
    for cid, envs in convs:
        spans = rebuild(envs, prefix=prefix, orchestrator=orchestrator)
        if fmt.machine:
            out.append({"conversationId": cid, "traceId": f"{spans[0].context.trace_id:032x}",
                        "spans": [_span_json(s) for s in spans]})
            continue
        console.print(f"[bold]conversation {cid}[/]", highlight=False)
        for line in render(spans, TreeOptions(ids=ids, durations=True)).splitlines():
            console.print(Text(line, style="red" if " ERROR" in line else ""), soft_wrap=True)
    if fmt.machine:
        emit(fmt, out)


def _span_json(span: Any) -> dict[str, Any]:
    return {
        "name": span.name, "spanId": f"{span.context.span_id:016x}",
        "parentId": f"{span.parent.span_id:016x}" if span.parent else None,
        "service": span.resource.attributes.get("service.name"), "kind": span.kind.name,
        "start": span.start_time, "end": span.end_time, "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}), "events": [e.name for e in span.events],
    }
