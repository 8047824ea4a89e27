"""`ledgerbus deadletters`: list requests JetStream gave up on (MaxDeliver) and re-drive them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ledgerbus.cli.common import DataDirOption, UrlOption, console, run
from ledgerbus.cli.connopts import connection_options
from ledgerbus.cli.live import PrefixOption
from ledgerbus.cli.output import Column, JsonlOption, JsonOption, choose, emit, table

app = typer.Typer(help="Requests dead-lettered after MaxDeliver deliveries: list them, re-drive them.",
                  no_args_is_help=True)


async def _connect(url: str | None, data_dir: str, prefix: str | None) -> Any:
    from ledgerbus.cli.live import connect

    return await connect(url, Path(data_dir), prefix=prefix, name="ledgerbus-deadletters")


def _sender(bus: Any) -> str | None:
    """Who re-sends: the signed user, else (unsecured) the request's own sender (see deadletters.redrive)."""
    from ledgerbus.cli.live import identity

    return identity(bus)


def _row(letter: Any) -> dict[str, Any]:
    e = letter.error
    return {
        "id": letter.id, "conversationId": e.conversation_id, "taskId": e.task_id, "capability": e.capability,
        "agent": e.sender, "deliveries": (e.error.details.get("deliveries") if e.error else None),
        "requestSeq": letter.request_seq, "redrivenBy": letter.redriven_by,
    }


@app.command("list")
@connection_options
def list_(
    url: str = UrlOption, data_dir: str = DataDirOption, prefix: str = PrefixOption,
    all_: bool = typer.Option(False, "--all", help="include letters already re-driven"),
    as_json: bool = JsonOption,
    as_jsonl: bool = JsonlOption,
) -> None:
    """Dead letters in the ledger that have not been re-driven.

    Examples:

      ledgerbus deadletters list

      ledgerbus deadletters list --all --json --url nats://127.0.0.1:4222
    """
    from ledgerbus.security import deadletters as dl

    fmt = choose(as_json, as_jsonl)

    async def go() -> list[dict[str, Any]]:
        bus = await _connect(url, data_dir, prefix)
        try:
            return [_row(x) for x in await dl.find(bus, include_redriven=all_)]
        finally:
            await bus.close()

    rows = run(go())
    if fmt.machine:
        emit(fmt, rows)
        return
    if not rows:
        console.print("no dead letters")
        return
    from ledgerbus.cli.render import task_label

    columns = [Column("id", is_id=True), Column("conversation", is_id=True), Column("task"), Column("capability"),
               Column("agent"), Column("deliveries", right=True), Column("redriven by", is_id=True)]
    lines = [[r["id"], r["conversationId"], task_label(r["taskId"], r["conversationId"]), r["capability"], r["agent"],
              "—" if r["deliveries"] is None else str(r["deliveries"]), r["redrivenBy"] or ""] for r in rows]
    console.print(table(console, columns, lines, drop=("redriven by", "deliveries", "agent", "capability")))


@app.command()
@connection_options
def redrive(
    ids: list[str] = typer.Argument(None, help="dead letter ids (deadletter-<seq>); none with --all: every pending one"),
    all_: bool = typer.Option(False, "--all", help="re-drive every dead letter not yet re-driven"),
    url: str = UrlOption, data_dir: str = DataDirOption, prefix: str = PrefixOption,
) -> None:
    """Re-send dead-lettered requests as a new attempt of the same task (same idempotency key).

    Examples:

      ledgerbus deadletters redrive deadletter-42

      ledgerbus deadletters redrive --all
    """
    from ledgerbus.security import deadletters as dl

    if not ids and not all_:
        raise typer.BadParameter("name the dead letters to re-drive, or pass --all")

    async def go() -> list[tuple[str, str]]:
        bus = await _connect(url, data_dir, prefix)
        try:
            return [(letter_id, env.id) for letter_id, env in await dl.redrive_named(bus, ids or [], sender=_sender(bus))]
        finally:
            await bus.close()

    done = run(go())
    for letter_id, request_id in done:
        console.print(f"re-drove {letter_id} as request {request_id}")
    if not done:
        console.print("nothing to re-drive")
