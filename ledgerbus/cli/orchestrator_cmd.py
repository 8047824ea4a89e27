"""`ledgerbus orchestrator run`: the orchestrator as a service, for the content pipeline."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from ledgerbus.cli.common import DataDirOption, UrlOption, err_console, run
from ledgerbus.cli.live import PrefixOption

app = typer.Typer(help="Run the orchestrator as a service.", no_args_is_help=True)


@app.command("run")
def run_orchestrator(
    name: str = typer.Option("orchestrator", "--name", help="the orchestrator's address on the bus"),
    recover: bool = typer.Option(True, "--recover/--no-recover",
                                 help="first finish conversations a previous orchestrator left open"),
    url: str = UrlOption,
    prefix: str = PrefixOption,
    data_dir: Path = DataDirOption,
) -> None:
    """Take REQUESTs addressed to the orchestrator (capability content.article), decompose them into tasks
    for the research, writing and editor agents, and answer; SIGINT/SIGTERM stops it.

    Its state lives in the ledger: a REQUEST it had not finished when stopped is redelivered and resumed.

    Examples:

      ledgerbus orchestrator run

      ledgerbus request orchestrator content.article '{"topic": "coffee"}' --timeout 60
    """
    run(_serve(name, recover, url, prefix, data_dir))


async def _serve(name: str, recover: bool, url: str | None, prefix: str | None, data_dir: Path) -> None:
    from ledgerbus.agents.examples import ContentPipeline
    from ledgerbus.cli.agent_cmd import install_stop_signals
    from ledgerbus.cli.live import connect
    from ledgerbus.orchestrator.engine import Orchestrator

    bus = await connect(url, data_dir, prefix=prefix, name=name)
    stop = install_stop_signals()
    orch = Orchestrator(bus, name=name, decomposer=ContentPipeline())
    ready = asyncio.Event()

    async def announce() -> None:
        await ready.wait()  # said once requests reach it, so whoever waits for the line can send at once
        err_console.print(f"orchestrator [bold]{name}[/] serving on {bus.url} — Ctrl-C or SIGTERM stops",
                          highlight=False, soft_wrap=True)

    announcing = asyncio.create_task(announce())
    try:
        await orch.serve(recover=recover, stop=stop, ready=ready)
    finally:
        announcing.cancel()
        await orch.stop()
        await bus.close()
