"""`ledgerbus stalls`: tasks that are silent, unacknowledged or late — computed from the ledger's fold."""

from __future__ import annotations

from pathlib import Path

import typer

from ledgerbus.cli.common import DataDirOption, UrlOption, console, run
from ledgerbus.cli.live import PrefixOption
from ledgerbus.cli.output import Column, JsonlOption, JsonOption, choose, emit, table
from ledgerbus.cli.render import task_label
from ledgerbus.cli.sources import LastOption, LedgerFileOption, load
from ledgerbus.cli.connopts import connection_options

WHAT = {
    "NO_RECEIPT": "never acknowledged",
    "STALLED": "acknowledged, then silent",
    "TIMED_OUT": "no answer within the task timeout",
    "DEADLINE_EXCEEDED": "past its deadline",
}


def human_ms(ms: int) -> str:
    s = ms / 1000
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


@connection_options
def stalls(
    ledger: Path = LedgerFileOption,
    receipt: float = typer.Option(None, "--receipt", min=0.001, help="seconds an ACK may take (default 2)"),
    stall_after: float = typer.Option(None, "--stall-after", min=0.001, help="seconds of silence after an ACK (default 10)"),
    timeout: float = typer.Option(None, "--timeout", min=0.001, help="seconds a task may take in all (default 30)"),
    last: int = LastOption,
    url: str = UrlOption,
    prefix: str = PrefixOption,
    data_dir: Path = DataDirOption,
    as_json: bool = JsonOption,
    as_jsonl: bool = JsonlOption,
) -> None:
    """List tasks that are unacknowledged, acknowledged and silent, timed out or past their deadline.

    Each with how long it has been silent and on which agent. Exit status 1 when there is any (like
    `ledgerbus verify`), so a script or a health check can act on it.

    Computed by folding the ledger (the live stream, or a recorded file with --ledger) with the same
    function the orchestrator uses, against the failure-policy defaults or the limits given here.

    Examples:

      ledgerbus stalls

      ledgerbus stalls --ledger .ledgerbus/ledger.db --stall-after 5 --json
    """
    fmt = choose(as_json, as_jsonl)
    from ledgerbus.ids import now_ms
    from ledgerbus.orchestrator.policy import TaskPolicy
    from ledgerbus.orchestrator.stalls import find_stalls

    base = TaskPolicy()
    policy = TaskPolicy(receipt_timeout=receipt or base.receipt_timeout, stall_after=stall_after or base.stall_after,
                        timeout=timeout or base.timeout)
    folded = run(load(ledger, url, data_dir, prefix, last))
    found = sorted(find_stalls(folded.states.values(), now_ms(), lambda cap, agent: policy),
                   key=lambda s: -s.silent_ms)
    if fmt.machine:
        emit(fmt, [{"conversationId": s.conversation_id, "taskId": s.task_id, "agent": s.agent,
                    "instance": folded.instances.get(s.task_id), "capability": s.capability,
                    "code": s.code, "silentMs": s.silent_ms, "attempt": s.attempt} for s in found])
    elif not found:
        console.print(f"no stalled tasks in {len(folded.states)} conversation(s)", highlight=False)
    else:
        columns = [Column("conversation", is_id=True), Column("task"), Column("agent"), Column("instance"),
                   Column("capability"), Column("problem"), Column("silent for", right=True),
                   Column("attempt", right=True)]
        rows = [[s.conversation_id, task_label(s.task_id, s.conversation_id), s.agent,
                 folded.instances.get(s.task_id, "—"), s.capability, f"[red]{s.code}[/]", human_ms(s.silent_ms),
                 str(s.attempt)] for s in found]
        console.print(table(console, columns, rows, title=f"{len(found)} stalled task(s)",
                            drop=("instance", "attempt", "capability", "agent")))
        for code in sorted({s.code for s in found}):
            console.print(f"  {code}: {WHAT.get(code, '')}", highlight=False)
    if found:
        raise typer.Exit(1)
