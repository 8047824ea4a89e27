"""`ledgerbus replay --mode resimulate|re-execute`: the replay modes that run an orchestrator."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import typer

from ledgerbus.cli.common import console, fail, run

DEFAULT_LEDGER = Path(".ledgerbus/ledger.db")


def _print(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=str) + "\n")


def decomposer_for(events: list[Any], decomposer: Any = None) -> Any:
    """The decomposer a conversation's capability needs: the user's (checked to declare it), else the
    example pipeline's for content.article, else one step (None)."""
    from ledgerbus.examples import ARTICLE, ContentPipeline, register

    register()
    cap = next((e.envelope.capability for e in events if e.envelope.action.value == "REQUEST"), "")
    if decomposer is not None:
        from ledgerbus.cli.pipeline_specs import check_serves

        check_serves(decomposer, cap, events[0].envelope.conversation_id if events else "")
        return decomposer
    return ContentPipeline() if cap == ARTICLE else None


def run_mode(mode: str, ledger: Path | None, url: str | None, prefix: str | None, conversation: list[str],
             point: Any, max_requests: int | None, as_json: bool, tasks: list[str] | None = None,
             pipeline: tuple[Any, Any] = (None, None)) -> None:
    """`pipeline`: the user's (decomposer, policies), None for the defaults."""
    if len(conversation) != 1:
        fail(f"--mode {mode} works on one conversation: give exactly one -c ID")
    from ledgerbus.cli.ledger_cmds import _events

    path = ledger or DEFAULT_LEDGER
    events = _events(path, conversation[0])
    if point is not None and point.position is not None:
        events = [e for e in events if e.position <= point.position]
    if mode == "resimulate":
        report = run(_resimulate(events, *pipeline))
        if as_json:
            _print({"conversationId": report.conversation_id, "same": report.same, "requests": report.requests,
                    "unanswered": report.unanswered,
                    "divergences": [{"task": d.task, "field": d.field, "recorded": d.recorded,
                                     "simulated": d.simulated} for d in report.divergences]})
        else:
            _print_divergences(report)
        if not report.same:
            raise typer.Exit(1)
        return
    if max_requests is None:
        fail("--mode re-execute sends REQUESTs for real: give a budget with --max-requests N")
    report = run(_re_execute(url, prefix, events, max_requests, tasks or [], *pipeline))
    if tasks:
        reruns = {t: {"task": s.task_id, "status": s.status.value, "attempts": s.attempts,
                      "error": s.error.code if s.error else None} for t, s in report.reruns.items()}
        if as_json:
            _print({"conversationId": report.conversation_id, "sent": report.sent, "budget": report.budget,
                    "refused": report.refused, "reruns": reruns})
        else:
            for t, r in reruns.items():
                console.print(f"re-ran {t} as {r['task']}: {r['status']} after {r['attempts']} attempt(s)"
                              + (f" ({r['error']})" if r["error"] else ""))
            console.print(f"{report.sent} of at most {report.budget} requests sent" + (" (budget reached)" if report.refused else ""))
        return
    status = report.result.status.value if report.result else "nothing unfinished"
    if as_json:
        _print({"conversationId": report.conversation_id, "sent": report.sent, "budget": report.budget,
                "refused": report.refused, "status": status})
        return
    console.print(f"re-executed {report.conversation_id}: {report.sent} of at most {report.budget} requests sent"
                  + (" (budget reached)" if report.refused else "") + f"; conversation {status}")


def _print_divergences(report: Any) -> None:
    if report.same:
        console.print(f"[green]no divergence[/]: today's orchestrator takes the recorded decisions "
                      f"({report.requests} requests) for {report.conversation_id}")
        return
    from rich.table import Table

    table = Table(title=f"{len(report.divergences)} divergences in {report.conversation_id}", header_style="bold")
    for col in ("task", "field", "recorded", "today"):
        table.add_column(col, overflow="fold")
    for d in report.divergences:
        table.add_row(d.task, d.field, str(d.recorded), str(d.simulated))
    console.print(table)


async def _resimulate(events: list[Any], decomposer: Any, policies: Any) -> Any:
    from ledgerbus.orchestrator.replaymodes import resimulate

    return await resimulate(events, decomposer=decomposer_for(events, decomposer), policies=policies)


async def _re_execute(url: str | None, prefix: str | None, events: list[Any], budget: int, tasks: list[str],
                      decomposer: Any, policies: Any) -> Any:
    from ledgerbus.cli.live import connect
    from ledgerbus.orchestrator.replaymodes import re_execute

    bus = await connect(url, Path(os.environ.get("LEDGERBUS_DATA_DIR") or ".ledgerbus"), prefix=prefix, name="ledgerbus-reexecute")
    try:
        return await re_execute(bus, events, max_requests=budget, decomposer=decomposer_for(events, decomposer),
                                policies=policies, tasks=tasks)
    finally:
        await bus.close()
