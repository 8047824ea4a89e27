"""The `ledgerbus` command."""

from __future__ import annotations

import typer

from ledgerbus.cli import helpfmt
from ledgerbus.cli import demo as demo_mod
from ledgerbus.cli import replay as replay_mod
from ledgerbus.cli import ledger_cmds
from ledgerbus.cli import schemas_cmd
from ledgerbus.cli import trace_cmd
from ledgerbus.cli import context_cmd, deadletters_cmd, security_cmd
from ledgerbus.cli import agent_cmd, agents_cmd, asyncapi_cmd, conversations_cmd, orchestrator_cmd, publish_cmd, record_cmd, server_cmd, stalls_cmd, tail_cmd, ui_cmd

app = typer.Typer(
    name="ledgerbus",
    help="An event-sourced message bus for teams of AI agents: JSON envelopes over NATS, a JetStream ledger, "
    "an orchestrator that survives failure.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings=helpfmt.HELP_OPTIONS,
)
helpfmt.install()


def _version(value: bool) -> None:
    if value:
        from importlib import metadata  # here, not at the top: it costs every CLI start ~50 ms otherwise

        print(f"ledgerbus {metadata.version('ledgerbus')}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", is_eager=True, callback=_version,
                                       help="print the version and exit")) -> None:
    pass

app.command()(demo_mod.demo)
app.command()(replay_mod.replay)
app.command()(ledger_cmds.diff)
app.command()(ledger_cmds.export)
app.command(name="import")(ledger_cmds.import_)
app.command()(ledger_cmds.verify)
app.command()(ledger_cmds.compact)
app.command()(ledger_cmds.fork)
app.command()(ledger_cmds.retention)
app.add_typer(schemas_cmd.app, name="schemas")
app.add_typer(trace_cmd.app, name="trace")
app.add_typer(deadletters_cmd.app, name="deadletters")
app.add_typer(security_cmd.app, name="security")
app.add_typer(context_cmd.app, name="context")
app.command()(server_cmd.up)
app.command()(server_cmd.down)
app.command()(server_cmd.status)
app.command()(record_cmd.record)
app.command()(publish_cmd.publish)
app.command()(publish_cmd.request)
app.command()(tail_cmd.tail)
app.command()(stalls_cmd.stalls)
app.command()(agents_cmd.agents)
app.command()(conversations_cmd.conversations)
app.command()(asyncapi_cmd.asyncapi)
app.command()(ui_cmd.ui)
app.add_typer(agent_cmd.app, name="agent")
app.add_typer(orchestrator_cmd.app, name="orchestrator")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
