"""`ledgerbus deadletters`: list requests JetStream gave up on (MaxDeliver) and re-drive them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ledgerbus.cli.common import DataDirOption, JsonOption, UrlOption, console, run

app = typer.Typer(help="Requests dead-lettered after MaxDeliver deliveries: list them, re-drive them.",
                  no_args_is_help=True)

SecretsOption = typer.Option(None, "--secrets", envvar="LEDGERBUS_SECRETS",
                             help="secured deployment folder (deployment.json + <user>.nk); unset: no auth")
UserOption = typer.Option("orchestrator", "--user", help="deployment user to connect as (a client role)")


async def _connect(url: str | None, data_dir: str, secrets: Path | None, user: str) -> Any:
    from ledgerbus.bus.connection import Bus

    if secrets is None:
        return await Bus.connect(url, data_dir=data_dir, name="ledgerbus-deadletters")
    from ledgerbus.bus.server import EmbeddedServer
    from ledgerbus.errors import ConfigError
    from ledgerbus.security.deployment import Deployment
    from ledgerbus.security.securebus import SecureBus

    if not url:
        state = EmbeddedServer.for_dir(data_dir).running()
        if state is None:
            raise ConfigError("--secrets needs --url, or a running embedded server for --data-dir")
        url = f"nats://{state['host']}:{state['port']}"
    return await SecureBus.connect_as(url, Deployment.load(secrets), user)


def _sender(bus: Any) -> str | None:
    """Who re-sends: the signed user, else (unsecured) the request's own sender (see deadletters.redrive)."""
    ident = getattr(bus, "identity", None)
    return ident.name if ident is not None else None


def _row(letter: Any) -> dict[str, Any]:
    e = letter.error
    return {
        "id": letter.id, "conversationId": e.conversation_id, "taskId": e.task_id, "capability": e.capability,
        "agent": e.sender, "deliveries": (e.error.details.get("deliveries") if e.error else None),
        "requestSeq": letter.request_seq, "redrivenBy": letter.redriven_by,
    }


@app.command("list")
def list_(
    url: str = UrlOption, data_dir: str = DataDirOption, secrets: Path = SecretsOption, user: str = UserOption,
    all_: bool = typer.Option(False, "--all", help="include letters already re-driven"),
    as_json: bool = JsonOption,
) -> None:
    """Dead letters in the ledger that have not been re-driven.

    Examples:

      ledgerbus deadletters list

      ledgerbus deadletters list --all --json --url nats://127.0.0.1:4222
    """
    from ledgerbus.security import deadletters as dl

    async def go() -> list[dict[str, Any]]:
        bus = await _connect(url, data_dir, secrets, user)
        try:
            return [_row(x) for x in await dl.find(bus, include_redriven=all_)]
        finally:
            await bus.close()

    rows = run(go())
    if as_json:
        from ledgerbus.cli.render import print_json

        print_json(console, rows)
        return
    if not rows:
        console.print("no dead letters")
        return
    from rich.table import Table

    table = Table("id", "conversation", "task", "capability", "agent", "deliveries", "redriven by")
    for r in rows:
        table.add_row(r["id"], r["conversationId"], r["taskId"], r["capability"], r["agent"],
                      str(r["deliveries"]), r["redrivenBy"] or "")
    console.print(table)


@app.command()
def redrive(
    ids: list[str] = typer.Argument(None, help="dead letter ids (deadletter-<seq>); none with --all: every pending one"),
    all_: bool = typer.Option(False, "--all", help="re-drive every dead letter not yet re-driven"),
    url: str = UrlOption, data_dir: str = DataDirOption, secrets: Path = SecretsOption, user: str = UserOption,
) -> None:
    """Re-send dead-lettered requests as a new attempt of the same task (same idempotency key).

    Examples:

      ledgerbus deadletters redrive deadletter-42

      ledgerbus deadletters redrive --all
    """
    from ledgerbus.errors import ConfigError
    from ledgerbus.security import deadletters as dl

    if not ids and not all_:
        raise typer.BadParameter("name the dead letters to re-drive, or pass --all")

    async def go() -> list[tuple[str, str]]:
        bus = await _connect(url, data_dir, secrets, user)
        try:
            letters = {x.id: x for x in await dl.find(bus, include_redriven=True)}
            unknown = [i for i in ids or [] if i not in letters]
            if unknown:
                raise ConfigError(f"no dead letter {', '.join(unknown)} in the ledger (see `ledgerbus deadletters list`)")
            chosen = [letters[i] for i in ids] if ids else [x for x in letters.values() if x.redriven_by is None]
            done = []
            for letter in chosen:
                env = await dl.redrive(bus, letter, sender=_sender(bus))
                done.append((letter.id, env.id))
            return done
        finally:
            await bus.close()

    done = run(go())
    for letter_id, request_id in done:
        console.print(f"re-drove {letter_id} as request {request_id}")
    if not done:
        console.print("nothing to re-drive")
