"""`ledgerbus demo`: the whole system in one process, one conversation, read back from the ledger."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path
from typing import Any

import typer
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
    # SIGTERM unwinds like Ctrl-C, through the clean-up below: a demo that dies leaves no server behind.
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        try:
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
            pass
    try:
        await _run_demo(topic, subtopics, ledger, url, data_dir)
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None
    finally:
        try:
            loop.remove_signal_handler(signal.SIGTERM)
        except (NotImplementedError, RuntimeError, ValueError):
            pass


async def _run_demo(topic: str, subtopics: int, ledger: Path, url: str | None, data_dir: Path) -> None:
    from ledgerbus.examples import AGENTS, ARTICLE, ContentPipeline, register
    from ledgerbus.agents.runtime import AgentRuntime
    from ledgerbus.bus.connection import Bus
    from ledgerbus.eventstore.base import EventFilter
    from ledgerbus.eventstore.fold import fold
    from ledgerbus.orchestrator.engine import Orchestrator

    register()
    logging.basicConfig(level=logging.WARNING)
    with console.status("starting nats-server, agents, recorder and orchestrator…"):
        bus = await Bus.connect(url, data_dir=data_dir, name="ledgerbus-demo")
    # From here on everything started is stopped again, whatever happens: the server last, with the bus.
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(bus.close)
        mirror = await stack.enter_async_context(_Mirror(bus, ledger))
        runtimes = [AgentRuntime(a, bus) for a in AGENTS]
        stack.push_async_callback(_stop_all, runtimes)
        for r in runtimes:
            await r.start()
        orch = Orchestrator(bus, decomposer=ContentPipeline())
        stack.push_async_callback(orch.stop)
        await orch.start()
        where = f"embedded nats-server at {bus.url} (store {data_dir})" if bus.server else bus.url
        console.print(f"[dim]bus: {where}[/]")
        if mirror.recorder is None:
            console.print(f"[dim]ledger: {ledger}, kept by the recorder of pid {mirror.holder}[/]")
        with console.status(f"researching, writing and editing “{topic}”…"):
            result = await orch.run(ARTICLE, {"topic": topic, "subtopics": subtopics})
            await mirror.catch_up()
        events = list(mirror.store.read(EventFilter(conversation_ids=(result.conversation_id,))))
        art = result.result or {}
        if art:
            from rich.markdown import Markdown  # only the demo's article needs it; it costs every CLI start ~30 ms

            console.print(Panel(Markdown(f"# {art['title']}\n\n{art['body']}"), title=f"article — {result.status.value}",
                                subtitle=f"{art['wordCount']} words, {len(art['sources'])} sources"))
            console.print("[bold]editor's changes:[/] " + "; ".join(art["changes"]))
        for reason in result.outcome.reasons:
            console.print(f"[yellow]degraded:[/] {reason}")
        console.print(timeline(events, title=f"timeline of conversation {result.conversation_id} (from the ledger)"))
        console.print(state_table(fold(events)))
        console.print(f"\nledger: [bold]{ledger}[/]  ({len(events)} events in this conversation)")
        console.print(f"replay: [bold]ledgerbus replay {ledger} --conversation {result.conversation_id}[/]")


async def _stop_all(runtimes: list[Any]) -> None:
    await asyncio.gather(*(r.stop() for r in runtimes), return_exceptions=True)


class _Mirror:
    """The demo's SQLite ledger: recorded by the demo itself, or, when a recorder already keeps that file
    (the one `ledgerbus up` supervises), read as that recorder writes it: one recorder per file."""

    def __init__(self, bus: Any, ledger: Path) -> None:
        self.bus, self.ledger = bus, ledger
        self.recorder: Any = None
        self.holder: int | None = None
        self.store: Any = None
        self._lock: Any = None
        self._durable: str | None = None

    async def __aenter__(self) -> "_Mirror":
        from ledgerbus.eventstore.recorder import Recorder
        from ledgerbus.eventstore.recorder_lock import RecorderLock, lock_holder
        from ledgerbus.eventstore.sqlite import SQLiteEventStore
        from ledgerbus.errors import StoreError

        try:
            self._lock = RecorderLock(self.ledger).acquire()
        except StoreError:
            self.holder = lock_holder(self.ledger)
            if self.holder is None:
                raise
            self.store = SQLiteEventStore(self.ledger, readonly=True)
            return self
        try:
            self.store = SQLiteEventStore(self.ledger)
            # A durable of its own, removed afterwards: the server may be one that `up` runs, whose
            # recorder already uses the default name.
            self._durable = f"demo-recorder-{os.getpid()}"
            self.recorder = await Recorder(self.bus, self.store, durable=self._durable).start()
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def catch_up(self, timeout: float = 10.0) -> None:
        if self.recorder is not None:
            await self.recorder.catch_up(timeout)
            return
        info = await self.bus.stream_info()
        deadline = asyncio.get_running_loop().time() + timeout
        while await asyncio.to_thread(self.store.checkpoint) < info.last_seq:
            if asyncio.get_running_loop().time() > deadline:
                from ledgerbus.errors import StoreError

                raise StoreError(f"{self.ledger} did not catch up with the stream within {timeout:.0f}s "
                                 f"(its recorder is pid {self.holder})")
            await asyncio.sleep(0.05)

    async def __aexit__(self, *exc: object) -> None:
        if self.recorder is not None:
            await self.recorder.stop()
            try:
                await self.bus.delete_consumer(self._durable)
            except Exception as err:  # the server may be gone already; the consumer then goes with it or stays idle
                logging.getLogger("ledgerbus.demo").debug("could not remove consumer %s: %s", self._durable, err)
        if self.store is not None:
            self.store.close()
        if self._lock is not None:
            self._lock.release()
