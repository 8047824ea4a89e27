"""Where `stalls` and `conversations` read the ledger from: a recorded SQLite file, or the live stream."""

from __future__ import annotations

from pathlib import Path

import typer

from ledgerbus.eventstore.fold import ConversationState, fold_all

LedgerFileOption = typer.Option(None, "--ledger", "-l",
                                help="read this recorded SQLite ledger instead of the live stream")
LastOption = typer.Option(None, "--last", help="only the newest N ledger positions (live stream)")


def from_file(ledger: Path) -> dict[str, ConversationState]:
    from ledgerbus.eventstore.sqlite import SQLiteEventStore

    store = SQLiteEventStore(ledger, readonly=True)  # StoreError (exit 2) when missing or not a ledger
    try:
        return fold_all((ev.position, ev.envelope) for ev in store.read())
    finally:
        store.close()


async def from_stream(url: str | None, data_dir: Path, prefix: str | None,
                      last: int | None = None) -> dict[str, ConversationState]:
    from ledgerbus.cli.live import connect, stored_events
    from ledgerbus.cli.progress import bar

    bus = await connect(url, data_dir, prefix=prefix)
    try:
        with bar("reading the ledger") as tick:
            events = await stored_events(bus, last=last, on_progress=tick)
    finally:
        await bus.close()
    return fold_all((ev.position, ev.envelope) for ev in events)


async def load_states(ledger: Path | None, url: str | None, data_dir: Path, prefix: str | None,
                      last: int | None = None) -> dict[str, ConversationState]:
    if ledger is not None:
        return from_file(ledger)
    return await from_stream(url, data_dir, prefix, last)
