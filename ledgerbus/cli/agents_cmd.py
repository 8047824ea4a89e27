"""`ledgerbus agents`: agent types from the KV directory — instances, capabilities, load — and breaker state
as the orchestrator recorded it in the ledger."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import typer

from ledgerbus.cli.common import DataDirOption, UrlOption, console, run
from ledgerbus.cli.live import PrefixOption
from ledgerbus.cli.output import Column, Format, JsonlOption, JsonOption, choose, emit, table
from ledgerbus.eventstore.base import StoredEvent
from ledgerbus.cli.connopts import connection_options


def breakers(events: Iterable[StoredEvent]) -> dict[str, dict[str, Any]]:
    """Per agent type, the breaker state the ledger shows: OPEN after a BREAKER_OPEN decision naming it,
    CLOSED again once that type answers a RESPONSE. Pure, so it can be tested without a server."""
    out: dict[str, dict[str, Any]] = {}
    for ev in events:
        e = ev.envelope
        if e.error is not None and e.error.code == "BREAKER_OPEN":
            for agent in e.error.details.get("agents") or []:
                out[str(agent)] = {"state": "OPEN", "since": e.timestamp,
                                   "retryAfter": e.error.details.get("retryAfter")}
        elif e.action.value == "RESPONSE" and e.sender in out and out[e.sender]["state"] == "OPEN":
            out[e.sender] = {"state": "CLOSED", "since": e.timestamp, "retryAfter": None}
    return out


def health(row: dict[str, Any]) -> str:
    """The table's health cell: instances that cannot pull, handlers abandoned past their limit."""
    parts = []
    if row["cannotPull"]:
        parts.append(f"[red]{len(row['cannotPull'])} cannot pull[/]")
    if row["abandoned"]:
        parts.append(f"[yellow]{row['abandoned']} abandoned[/]")
    return ", ".join(parts) or "[green]ok[/]"


@connection_options
def agents(
    name: str = typer.Argument(None, help="show one agent type in detail, with its capabilities' schemas"),
    history: int = typer.Option(5000, "--history", min=0, help="ledger positions to read for breaker state"),
    url: str = UrlOption,
    prefix: str = PrefixOption,
    data_dir: Path = DataDirOption,
    as_json: bool = JsonOption,
    as_jsonl: bool = JsonlOption,
) -> None:
    """List agent types: live instances, capabilities, load, tasks handled, breaker state.

    From the KV directory; load is tasks in flight / concurrency; breaker state comes from the
    orchestrator's decisions in the ledger (BREAKER_OPEN, then a RESPONSE closes it).

    Examples:

      ledgerbus agents

      ledgerbus agents research --json
    """
    run(_agents(name, history, url, prefix, data_dir, choose(as_json, as_jsonl)))


async def _agents(name: str | None, history: int, url: str | None, prefix: str | None, data_dir: Path,
                  fmt: Format) -> None:
    import msgspec

    from ledgerbus.bus.directory import Directory
    from ledgerbus.cli.live import connect, stored_events
    from ledgerbus.errors import UnknownAgent
    from ledgerbus.cli.progress import bar

    bus = await connect(url, data_dir, prefix=prefix)
    try:
        live = await Directory(bus).live_types()
        with bar("reading the ledger for breaker state") as tick:
            brk = breakers(await stored_events(bus, last=history, on_progress=tick)) if history else {}
    finally:
        await bus.close()
    if name is not None:
        if name not in live:
            raise UnknownAgent(f"unknown agent {name!r}: no live instance in the directory "
                               f"(live agents: {', '.join(sorted(live)) or 'none'})")
        live = {name: live[name]}
    rows: list[dict[str, Any]] = []
    for agent in sorted(set(live) | (set(brk) if name is None else set())):
        insts = live.get(agent, [])
        caps = sorted({c.name for i in insts for c in i.capabilities})
        rows.append({
            "agent": agent, "instances": [i.instance for i in insts], "capabilities": caps,
            "inflight": sum(i.inflight for i in insts), "concurrency": sum(i.concurrency for i in insts),
            "handled": sum(i.handled for i in insts),
            # Instances announcing while unable to pull their requests, and handlers left running past their limit.
            "cannotPull": {i.instance: i.pull_error for i in insts if i.pull_error},
            "abandoned": sum(i.abandoned for i in insts),
            "breaker": brk.get(agent, {"state": "CLOSED", "since": None, "retryAfter": None}),
        })
    if name is not None:
        detail = {c.name: msgspec.to_builtins(c) for i in live[name] for c in i.capabilities}
        rows[0]["capabilityDetails"] = detail
    if fmt.machine:
        emit(fmt, rows)
        return
    if not rows:
        console.print("no agents registered", highlight=False)
        return
    columns = [Column("type"), Column("instances", right=True), Column("capabilities"), Column("load", right=True),
               Column("handled", right=True), Column("breaker"), Column("health")]
    lines = []
    for r in rows:
        b = r["breaker"]["state"]
        lines.append([r["agent"], str(len(r["instances"])), ", ".join(r["capabilities"]) or "—",
                      f"{r['inflight']}/{r['concurrency']}", str(r["handled"]),
                      f"[red]{b}[/]" if b == "OPEN" else f"[green]{b}[/]", health(r)])
    console.print(table(console, columns, lines, title="agents", drop=("handled", "load")))
    if name is not None:
        for inst in r["instances"]:
            problem = r["cannotPull"].get(inst)
            console.print(f"instance {inst}" + (f" — {problem}" if problem else ""), highlight=False)
        for cap, d in r["capabilityDetails"].items():
            console.print(f"[bold]{cap}[/] v{d['version']} {d['description']}", highlight=False)
            console.print_json(json.dumps({"input": d["inputSchema"], "output": d["outputSchema"]}))
