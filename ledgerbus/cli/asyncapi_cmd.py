"""`ledgerbus asyncapi`: write the deployment's AsyncAPI 3.0 document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from ledgerbus.cli.common import DataDirOption, UrlOption, console, run
from ledgerbus.cli.live import PrefixOption
from ledgerbus.cli.connopts import connection_options


@connection_options
def asyncapi(
    agent: list[str] = typer.Option([], "--agent", "-a", help="module:agent to describe (repeatable; default: "
                                    "the built-in research, writing and editor agents)"),
    live: bool = typer.Option(False, "--live", help="describe the agents registered in the running deployment"),
    out: Path = typer.Option(None, "--out", "-o", help="write to this file (default: stdout)"),
    server: str = typer.Option(None, "--server", help="host:port to list as the NATS server in the document"),
    url: str = UrlOption,
    prefix: str = PrefixOption,
    data_dir: Path = DataDirOption,
) -> None:
    """Write the deployment's AsyncAPI 3.0 document (channels, operations, message schemas).

    Channels are the subject templates, one operation per agent and capability, and messages carry
    the envelope and payload JSON Schemas.

    Examples:

      ledgerbus asyncapi -o asyncapi.json

      ledgerbus asyncapi --agent my_agents.echo:agent --server nats.example.com:4222

      ledgerbus asyncapi --live --url nats://127.0.0.1:4222
    """
    doc = run(_build(agent, live, server, url, prefix, data_dir))
    text = json.dumps(doc, indent=2) + "\n"
    if out is None:
        print(text, end="")
        return
    out.write_text(text)
    console.print(f"wrote {out}: {len(doc['channels'])} channels, {len(doc['operations'])} operations", highlight=False)


async def _build(specs: list[str], live: bool, server: str | None, url: str | None, prefix: str | None,
                 data_dir: Path) -> dict[str, Any]:
    import os

    from ledgerbus._version import __version__
    from ledgerbus.agents.asyncapi import build, from_agents

    agents: dict[str, list[Any]] = {}
    if live:
        from ledgerbus.bus.directory import Directory
        from ledgerbus.cli.live import connect

        bus = await connect(url, data_dir, prefix=prefix)
        try:
            for name, insts in (await Directory(bus).live_types()).items():
                # Instances of one type can run different releases: describe every capability any of them offers.
                caps = {c.name: c for i in insts for c in i.capabilities}
                agents[name] = list(caps.values())
            server = server or bus.url.split("://", 1)[-1]
            prefix = bus.subjects.prefix
        finally:
            await bus.close()
    if specs:
        from ledgerbus.cli.agent_cmd import load_agent

        agents.update(from_agents(load_agent(s) for s in specs))
    if not live and not specs:
        from ledgerbus.examples import AGENTS

        agents.update(from_agents(AGENTS))
    return build(agents, prefix=prefix or os.environ.get("LEDGERBUS_PREFIX") or "lb",
                 servers={"ledgerbus": server} if server else None, version=__version__)
