"""Where `stalls` and `conversations` read the ledger from: a recorded SQLite file, or the live stream."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import typer

from ledgerbus.eventstore.base import Damaged, StoredEvent
from ledgerbus.eventstore.fold import ConversationState, apply

LedgerFileOption = typer.Option(None, "--ledger", "-l",
                                help="read this recorded SQLite ledger instead of the live stream")
LastOption = typer.Option(None, "--last", help="only the newest N ledger positions (live stream)")


@dataclass
class Folded:
    """Every conversation's folded state, and which instance acknowledged each task last (the ACK says)."""

    states: dict[str, ConversationState] = field(default_factory=dict)
    instances: dict[str, str] = field(default_factory=dict)  # task id → instance
    damaged: list[Damaged] = field(default_factory=list)  # stored events that no longer decode, skipped


def fold_events(events: Iterable[StoredEvent]) -> Folded:
    """One streaming pass: memory grows with the number of conversations, not of events."""
    out = Folded()
    for ev in events:
        env = ev.envelope
        st = out.states.get(env.conversation_id)
        if st is None:
            st = out.states[env.conversation_id] = ConversationState(conversation_id=env.conversation_id)
        apply(st, env, ev.position, ev.stored_at)  # JetStream's time, not the sender's
        if env.action.value == "ACK" and isinstance(env.payload.get("instance"), str):
            out.instances[env.task_id] = env.payload["instance"]
    return out


def from_file(ledger: Path) -> Folded:
    from ledgerbus.eventstore.sqlite import SQLiteEventStore

    from ledgerbus.cli.damaged import warn_damaged

    store = SQLiteEventStore(ledger, readonly=True)  # StoreError (exit 2) when missing or not a ledger
    damaged: list[Damaged] = []
    try:
        folded = fold_events(store.read(damaged=damaged))
    finally:
        store.close()
    folded.damaged = damaged
    warn_damaged(damaged)
    return folded


async def from_stream(url: str | None, data_dir: Path, prefix: str | None, last: int | None = None) -> Folded:
    from ledgerbus.cli.live import connect, stored_events
    from ledgerbus.cli.progress import bar

    bus = await connect(url, data_dir, prefix=prefix)
    try:
        with bar("reading the ledger") as tick:
            events = await stored_events(bus, last=last, on_progress=tick)
    finally:
        await bus.close()
    return fold_events(events)


async def load(ledger: Path | None, url: str | None, data_dir: Path, prefix: str | None,
               last: int | None = None) -> Folded:
    if ledger is not None:
        return from_file(ledger)
    return await from_stream(url, data_dir, prefix, last)
