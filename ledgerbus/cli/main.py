"""The `ledgerbus` command."""

from __future__ import annotations

import typer

from ledgerbus.cli import demo as demo_mod
from ledgerbus.cli import replay as replay_mod
from ledgerbus.cli import schemas_cmd

app = typer.Typer(
    name="ledgerbus",
    help="An event-sourced message bus for teams of AI agents: JSON envelopes over NATS, a JetStream ledger, "
    "an orchestrator that survives failure.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(demo_mod.demo)
app.command()(replay_mod.replay)
app.add_typer(schemas_cmd.app, name="schemas")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
