"""`ledgerbus orchestrator run`: the orchestrator as a service, for the content pipeline or a user's own."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer

from ledgerbus.cli.common import DataDirOption, UrlOption, err_console, run
from ledgerbus.cli.live import PrefixOption
from ledgerbus.cli.pipeline_specs import DecomposerOption, PoliciesOption, load_pipeline
from ledgerbus.cli.connopts import connection_options

app = typer.Typer(help="Run the orchestrator as a service.", no_args_is_help=True)


@app.command("run")
@connection_options
def run_orchestrator(
    name: str = typer.Option("orchestrator", "--name", help="the orchestrator's address on the bus"),
    recover: bool = typer.Option(True, "--recover/--no-recover",
                                 help="first finish conversations a previous orchestrator left open"),
    decomposer: str = DecomposerOption,
    policies: str = PoliciesOption,
    url: str = UrlOption,
    prefix: str = PrefixOption,
    data_dir: Path = DataDirOption,
) -> None:
    """Take REQUESTs addressed to the orchestrator, decompose them into tasks for agents, and answer;
    SIGINT/SIGTERM stops it.

    It answers the capabilities its decomposer declares (the demo pipeline: content.article, with the
    research, writing and editor agents) and is listed with them in `ledgerbus agents` while it runs.
    Its state lives in the ledger: a REQUEST it had not finished when stopped is redelivered and resumed.

    Examples:

      ledgerbus orchestrator run

      ledgerbus request orchestrator content.article '{"topic": "coffee"}' --timeout 60

      ledgerbus orchestrator run --decomposer ./my_pipeline.py:Pipeline --policies ./my_pipeline.py:policies
    """
    run(_serve(name, recover, decomposer, policies, url, prefix, data_dir))


async def _serve(name: str, recover: bool, decomposer_spec: str | None, policies_spec: str | None,
                 url: str | None, prefix: str | None, data_dir: Path) -> None:
    from ledgerbus.examples import ContentPipeline, register
    from ledgerbus.cli.agent_cmd import install_stop_signals
    from ledgerbus.cli.live import connect
    from ledgerbus.orchestrator.engine import Orchestrator

    register()  # content.article's schemas, for the default pipeline and `--decomposer ledgerbus.examples:...`
    decomposer, policies = load_pipeline(decomposer_spec, policies_spec)  # bad specs fail before connecting
    bus = await connect(url, data_dir, prefix=prefix, name=name, sender=name)
    stop = install_stop_signals()
    orch = Orchestrator(bus, name=name, decomposer=decomposer or ContentPipeline(), policies=policies)
    try:
        ready = asyncio.Event()
        serving = asyncio.ensure_future(orch.serve(recover=recover, stop=stop, ready=ready))
        await _started(serving, ready)
        caps = ", ".join(sorted(orch.decomposer.capabilities))
        err_console.print(f"orchestrator [bold]{name}[/] ({caps}) serving on {bus.url} — Ctrl-C or SIGTERM stops",
                          highlight=False, soft_wrap=True)
        await serving
    finally:
        await orch.stop()
        await bus.close()


async def _started(serving: "asyncio.Future[Any]", ready: asyncio.Event) -> None:
    """Wait until requests reach the service (it is announced by then), or raise why it could not start."""
    waiting = asyncio.ensure_future(ready.wait())
    try:
        await asyncio.wait({serving, waiting}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
    if serving.done():
        serving.result()  # its error, e.g. a declared capability with no schema
