"""`ledgerbus conversations`: recent conversations and how they went, from the ledger's fold."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import typer

from ledgerbus.cli.common import DataDirOption, UrlOption, console, run
from ledgerbus.cli.live import PrefixOption
from ledgerbus.cli.output import Column, JsonlOption, JsonOption, choose, emit, table
from ledgerbus.cli.render import STATUS_STYLE
from ledgerbus.cli.sources import LastOption, LedgerFileOption, load
from ledgerbus.eventstore.fold import ConversationState, TaskStatus
from ledgerbus.cli.connopts import connection_options

FAILED = (TaskStatus.FAILED, TaskStatus.STALLED, TaskStatus.TIMED_OUT)


def summary(st: ConversationState) -> dict[str, Any]:
    agents = {t.agent for t in st.tasks.values() if t.agent}  # the root's recipient too: it worked on it
    errors = sum(1 for t in st.tasks.values() if t.status in FAILED) + sum(
        1 for t in st.tasks.values() for d in t.decisions if d.code not in ("RETRY_SCHEDULED",))
    return {"conversationId": st.conversation_id, "capability": st.capability, "requester": st.requester,
            "status": st.status.value, "startedAt": st.started_at, "durationMs": st.duration_ms,
            "tasks": len(st.tasks), "agents": len(agents), "errors": errors, "events": st.events}


@connection_options
def conversations(
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="how many, newest first"),
    status: list[str] = typer.Option([], "--status", "-s", help="only RUNNING, DONE, DEGRADED or FAILED (repeatable)"),
    ledger: Path = LedgerFileOption,
    last: int = LastOption,
    url: str = UrlOption,
    prefix: str = PrefixOption,
    data_dir: Path = DataDirOption,
    as_json: bool = JsonOption,
    as_jsonl: bool = JsonlOption,
) -> None:
    """List recent conversations: status, duration, agents involved, errors.

    Read from the live stream, or from a recorded SQLite ledger with --ledger; replay one with
    `ledgerbus replay LEDGER -c ID`.

    Examples:

      ledgerbus conversations

      ledgerbus conversations --status FAILED --status DEGRADED --json

      ledgerbus conversations --ledger .ledgerbus/ledger.db -n 5
    """
    fmt = choose(as_json, as_jsonl)
    wanted = {s.upper() for s in status}
    bad = wanted - {"RUNNING", "DONE", "DEGRADED", "FAILED"}
    if bad:
        from ledgerbus.cli.common import fail

        fail(f"unknown status {sorted(bad)[0]!r}: use RUNNING, DONE, DEGRADED or FAILED")
    states = run(load(ledger, url, data_dir, prefix, last)).states
    # A "conversation" with no REQUEST is an ERROR answering a message that was not an envelope: not listed.
    rows = [summary(st) for st in states.values()
            if st.root_task_id is not None and (not wanted or st.status.value in wanted)]
    total = sum(1 for st in states.values() if st.root_task_id is not None)
    rows.sort(key=lambda r: r["startedAt"] or 0, reverse=True)
    rows = rows[:limit]
    if fmt.machine:
        emit(fmt, rows)
        return
    if not rows:
        console.print("no conversations", highlight=False)
        return
    columns = [Column("conversation", is_id=True), Column("capability"), Column("from"), Column("status"),
               Column("started"), Column("duration", right=True), Column("agents", right=True),
               Column("tasks", right=True), Column("errors", right=True)]
    lines = []
    for r in rows:
        started = datetime.fromtimestamp(r["startedAt"] / 1000).strftime("%Y-%m-%d %H:%M:%S") if r["startedAt"] else "—"
        dur = f"{r['durationMs']} ms" if r["durationMs"] is not None else "—"
        st = r["status"]
        lines.append([r["conversationId"], r["capability"] or "—", r["requester"] or "—",
                      f"[{STATUS_STYLE.get(st, '')}]{st}[/]", started, dur, str(r["agents"]), str(r["tasks"]),
                      f"[red]{r['errors']}[/]" if r["errors"] else "0"])
    console.print(table(console, columns, lines, title=f"{len(rows)} of {total} conversation(s), newest first",
                        drop=("from", "agents", "tasks", "started", "capability")))
