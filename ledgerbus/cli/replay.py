"""`ledgerbus replay`: rebuild state from a recorded ledger by folding it. Never publishes."""

from __future__ import annotations

from pathlib import Path

import typer

from ledgerbus.cli.common import JsonOption, console, fail
from ledgerbus.cli.render import print_json, state_json, state_table, timeline_table


def replay(
    ledger: Path = typer.Argument(..., help="SQLite ledger file (e.g. .ledgerbus/ledger.db)"),
    conversation: list[str] = typer.Option([], "--conversation", "-c", help="conversation id (repeatable; default: all)"),
    agent: list[str] = typer.Option([], "--agent", "-a", help="only events sent or received by this agent"),
    action: list[str] = typer.Option([], "--action", help="only these actions (REQUEST, ACK, …)"),
    until: int = typer.Option(None, "--until", help="state as it was at this ledger position"),
    timeline: bool = typer.Option(True, "--timeline/--no-timeline", help="print the event timeline"),
    as_json: bool = JsonOption,
) -> None:
    """Print each conversation's timeline and the state the fold rebuilds: tasks, status, attempts, results.

    Examples:

      ledgerbus replay .ledgerbus/ledger.db

      ledgerbus replay .ledgerbus/ledger.db -c 0193… --until 42 --json
    """
    from ledgerbus.errors import StoreError
    from ledgerbus.eventstore.base import EventFilter
    from ledgerbus.eventstore.fold import fold
    from ledgerbus.eventstore.sqlite import SQLiteEventStore

    try:
        store = SQLiteEventStore(ledger, readonly=True)
    except StoreError as exc:
        fail(str(exc), 2)
    ids = conversation or store.conversation_ids()
    out = []
    for cid in ids:
        flt = EventFilter(conversation_ids=(cid,), agents=tuple(agent), actions=tuple(a.upper() for a in action), until=until)
        events = list(store.read(flt))
        if not events:
            if conversation:
                fail(f"conversation {cid} has no events in {ledger}" + (f" up to position {until}" if until else ""))
            continue
        state = fold(events)
        if as_json:
            out.append({"conversationId": cid, "state": state_json(state),
                        "events": [{"position": e.position, **_env(e.envelope)} for e in events] if timeline else None})
            continue
        if timeline:
            console.print(timeline_table(events, title=f"timeline of {cid}"))
        console.print(state_table(state))
    if as_json:
        print_json(console, out)
    store.close()


def _env(env: object) -> dict[str, object]:
    import msgspec

    return msgspec.to_builtins(env)  # type: ignore[no-any-return]
