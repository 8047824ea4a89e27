"""`ledgerbus agent run module:agent`: serve a user's agent until SIGINT/SIGTERM, then drain."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import typer

from ledgerbus.cli.common import DataDirOption, UrlOption, err_console, run
from ledgerbus.cli.live import PrefixOption
from ledgerbus.errors import ConfigError
from ledgerbus.cli.connopts import connection_options

app = typer.Typer(help="Run agents from the command line.", no_args_is_help=True)


def load_agent(spec: str) -> Any:
    """`package.module:name` or `path/to/file.py:name` (name defaults to `agent`) → the Agent object."""
    from ledgerbus.agents.sdk import Agent
    from ledgerbus.cli.loader import load_spec

    loaded = load_spec(spec, default_attr="agent", example="my_agents.echo:agent")
    if not isinstance(loaded.value, Agent):
        found = [k for k, v in vars(loaded.module).items() if isinstance(v, Agent)]
        hint = f"; agents in {loaded.target}: {', '.join(found)}" if found else ""
        raise ConfigError(f"{spec!r}: {loaded.attr!r} is not a ledgerbus Agent{hint}")
    return loaded.value


@app.command("run")
@connection_options
def run_agent(
    spec: str = typer.Argument(..., help="module:agent or path/to/file.py:agent"),
    instances: int = typer.Option(1, "--instances", "-i", min=1, max=64, help="instances in this process"),
    concurrency: int = typer.Option(16, "--concurrency", min=1, help="tasks each instance runs at once"),
    drain_timeout: float = typer.Option(30.0, "--drain-timeout", min=0.0,
                                        help="seconds to let in-flight tasks finish on shutdown"),
    url: str = UrlOption,
    prefix: str = PrefixOption,
    data_dir: Path = DataDirOption,
) -> None:
    """Serve an agent: pull its type's REQUESTs, announce it in the directory, answer until stopped.

    SIGINT (Ctrl-C) or SIGTERM drains: the instance stops pulling, finishes the tasks it holds
    (up to --drain-timeout) and leaves; whatever it had not taken stays for the other instances.

    Examples:

      ledgerbus agent run my_agents.echo:agent

      ledgerbus agent run ./echo.py:agent --instances 4 --url nats://10.0.0.5:4222
    """
    run(_serve(spec, instances, concurrency, drain_timeout, url, prefix, data_dir))


async def _serve(spec: str, instances: int, concurrency: int, drain_timeout: float, url: str | None,
                 prefix: str | None, data_dir: Path) -> None:
    from ledgerbus.agents.runtime import AgentRuntime
    from ledgerbus.cli.live import connect

    agent = load_agent(spec)
    bus = await connect(url, data_dir, prefix=prefix, name=f"agent-{agent.name}", sender=agent.name)
    stop = install_stop_signals()
    runtimes = [AgentRuntime(agent, bus, concurrency=concurrency) for _ in range(instances)]
    try:
        for rt in runtimes:
            await rt.start()
        err_console.print(f"serving [bold]{agent.name}[/] ({', '.join(agent.capabilities)}) × {instances} on "
                          f"{bus.url} — Ctrl-C or SIGTERM drains and stops", highlight=False, soft_wrap=True)
        await stop.wait()
        busy = sum(len(rt.inflight) for rt in runtimes)
        err_console.print(f"draining: {busy} task(s) in flight, no new work taken", highlight=False, soft_wrap=True)
    finally:
        await asyncio.gather(*(rt.stop(drain=True, timeout=drain_timeout) for rt in runtimes), return_exceptions=True)
        await bus.close()
    err_console.print(f"stopped {agent.name}: {sum(rt.handled for rt in runtimes)} task(s) handled", highlight=False, soft_wrap=True)


def install_stop_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM, so services stop cleanly instead of dying mid-task."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
            pass
    return stop
