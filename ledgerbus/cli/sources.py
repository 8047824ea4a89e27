"""Where the commands that read a ledger read it from: a recorded SQLite file, or the live LEDGER stream.

Either is an EventSource (eventstore/base.py), so each command is written once, over `open_source`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ledgerbus.eventstore.base import Damaged, EventFilter, EventSource, StoredEvent
from ledgerbus.eventstore.fold import ConversationState
from ledgerbus.eventstore.folds import Folds, fold_source

if TYPE_CHECKING:
    from ledgerbus.eventstore.sqlite import SQLiteEventStore

LedgerFileOption = typer.Option(None, "--ledger", "-l",
                                help="read this recorded SQLite ledger instead of the live stream")
LastOption = typer.Option(None, "--last", help="only the newest N ledger positions (live stream)")


@dataclass
class Opened:
    """An open ledger: what reads it, and what the commands say about it."""

    source: EventSource
    where: str  # the file's path, or "LEDGER at nats://…"
    prefix: str  # the deployment's subject prefix (a file does not know it: --prefix, else lb)
    store: "SQLiteEventStore | None" = None  # a file's store: compaction snapshots live there


@contextlib.asynccontextmanager
async def open_source(ledger: Path | None, url: str | None, data_dir: Path, prefix: str | None, *,
                      name: str = "ledgerbus-cli", trusted: bool = False) -> AsyncIterator[Opened]:
    """The SQLite file `ledger` (read-only; StoreError, exit 2, when missing or not a ledger), else the live
    stream at `url` or the embedded server for `data_dir` (ServerError, exit 2, when none answers).
    `trusted`: the file's envelopes were validated by the recorder (replay reads them faster)."""
    if ledger is not None:
        from ledgerbus.eventstore.sqlite_source import SQLiteSource

        src = SQLiteSource.open(ledger, trusted=trusted)
        try:
            yield Opened(src, str(ledger), prefix or "lb", src.store)
        finally:
            await src.close()
        return
    from ledgerbus.cli.live import connect
    from ledgerbus.eventstore.jetstream import JetStreamLedger

    bus = await connect(url, data_dir, prefix=prefix, name=name)
    try:
        yield Opened(JetStreamLedger(bus), f"{bus.subjects.stream} at {url or bus.url}", bus.subjects.prefix)
    finally:
        await bus.close()


async def newest(source: EventSource, last: int | None) -> EventFilter:
    """The filter of the newest `last` positions (all of them for None)."""
    if not last:
        return EventFilter()
    return EventFilter(after=max(await source.last_position() - last, 0))


@dataclass
class Folded:
    """Every conversation's folded state, and which instance acknowledged each task last (the ACK says)."""

    folds: Folds = field(default_factory=Folds)
    instances: dict[str, str] = field(default_factory=dict)  # task id → instance
    damaged: list[Damaged] = field(default_factory=list)  # stored events that no longer decode, skipped

    @property
    def states(self) -> dict[str, ConversationState]:
        return self.folds.states

    def saw(self, events: list[StoredEvent]) -> None:
        for ev in events:
            env = ev.envelope
            if env.action.value == "ACK" and isinstance(env.payload.get("instance"), str):
                self.instances[env.task_id] = env.payload["instance"]


async def load(ledger: Path | None, url: str | None, data_dir: Path, prefix: str | None,
               last: int | None = None) -> Folded:
    """Fold the file or the live stream in one streaming pass: memory grows with conversations, not events."""
    from ledgerbus.cli.damaged import warn_damaged
    from ledgerbus.cli.progress import bar

    out = Folded()
    async with open_source(ledger, url, data_dir, prefix) as opened:
        src = opened.source
        flt = await newest(src, last if ledger is None else None)
        end = await src.last_position()
        with bar("reading the ledger") as tick:
            def each(chunk: list[StoredEvent]) -> None:
                out.saw(chunk)
                tick(chunk[-1].position - flt.after, end - flt.after)

            await fold_source(src, flt, folds=out.folds, each=each)
        out.damaged = list(src.damaged)
    warn_damaged(out.damaged)
    return out
