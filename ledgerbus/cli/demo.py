"""`ledgerbus demo`: the whole system in one process, one conversation, read back from the ledger."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import typer
from rich.markdown import Markdown
from rich.panel import Panel

from ledgerbus.cli.common import DataDirOption, UrlOption, console, run
from ledgerbus.cli.ledger_view import timeline
from ledgerbus.cli.render import state_table


def demo(
    topic: str = typer.Argument("multi-agent systems", help="what the article should be about"),
    subtopics: int = typer.Option(3, "--subtopics", min=1, max=8, help="research angles, run in parallel"),
    ledger: Path = typer.Option(None, "--ledger", help="SQLite ledger file (default: <data-dir>/ledger.db)"),
    url: str = UrlOption,
    data_dir: Path = DataDirOption,
) -> None:
    """Run the embedded server, three agents, the recorder and the orchestrator; write one article.

    Examples:

      ledgerbus demo "event sourcing"

      ledgerbus demo "coffee" --subtopics 2 --ledger /tmp/coffee.db
    """
    run(_demo(topic, subtopics, ledger or data_dir / "ledger.db", url, data_dir))


async def _demo(topic: str, subtopics: int, ledger: Path, url: str | None, data_dir: Path) -> None:
    from ledgerbus.agents.examples import AGENTS, ARTICLE, ContentPipeline
    from ledgerbus.agents.runtime import AgentRuntime
    from ledgerbus.bus.connection import Bus
    from ledgerbus.eventstore.base import EventFilter
    from ledgerbus.eventstore.fold import fold
    from ledgerbus.eventstore.recorder import Recorder
    from ledgerbus.eventstore.sqlite import SQLiteEventStore
    from ledgerbus.orchestrator.engine import Orchestrator

    logging.basicConfig(level=logging.WARNING)
    with console.status("starting nats-server, agents, recorder and orchestrator…"):
        bus = await Bus.connect(url, data_dir=data_dir, name="ledgerbus-demo")
    store = SQLiteEventStore(ledger)
    runtimes = [AgentRuntime(a, bus) for a in AGENTS]
    recorder = Recorder(bus, store)
    orch = Orchestrator(bus, decomposer=ContentPipeline())
    try:
        await recorder.start()
        await asyncio.gather(*(r.start() for r in runtimes))
        await orch.start()
        where = f"embedded nats-server at {bus.url} (store {data_dir})" if bus.server else bus.url
        console.print(f"[dim]bus: {where}[/]")
        with console.status(f"researching, writing and editing “{topic}”…"):
            result = await orch.run(ARTICLE, {"topic": topic, "subtopics": subtopics})
            await recorder.catch_up()
        events = list(store.read(EventFilter(conversation_ids=(result.conversation_id,))))
        art = result.result or {}
        if art:
            console.print(Panel(Markdown(f"# {art['title']}\n\n{art['body']}"), title=f"article — {result.status.value}",
                                subtitle=f"{art['wordCount']} words, {len(art['sources'])} sources"))
            console.print("[bold]editor's changes:[/] " + "; ".join(art["changes"]))
        for reason in result.outcome.reasons:
            console.print(f"[yellow]degraded:[/] {reason}")
        console.print(timeline(events, title=f"timeline of conversation {result.conversation_id} (from the ledger)"))
        console.print(state_table(fold(events)))
        console.print(f"\nledger: [bold]{ledger}[/]  ({len(events)} events in this conversation)")
        console.print(f"replay: [bold]ledgerbus replay {ledger} --conversation {result.conversation_id}[/]")
    finally:
        await orch.stop()
        await asyncio.gather(*(r.stop() for r in runtimes), return_exceptions=True)
        await recorder.stop()
        store.close()
        await bus.close()
