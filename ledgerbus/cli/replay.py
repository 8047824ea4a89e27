"""`ledgerbus replay`: rebuild state from a recorded ledger by folding it. Reconstruct never publishes.

Sources: a SQLite ledger file, or the live JetStream LEDGER (`--url`, read through an ephemeral
consumer that acknowledges nothing). Both stream in batches, so memory does not grow with the
ledger: with a few conversations selected it prints each one's timeline and state; over a whole
ledger it prints one line per conversation as each ends.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from ledgerbus.cli.common import JsonOption, console, fail, is_tty, run
from ledgerbus.cli.ledger_view import ReplaySink, parse_filter
from ledgerbus.cli.pipeline_specs import DecomposerOption, PoliciesOption, pipeline_or_fail
from ledgerbus.cli.connopts import connection_options
from ledgerbus.cli.live import PrefixOption
from ledgerbus.cli.output import JsonlOption, choose

MODES = ("reconstruct", "resimulate", "re-execute")


@connection_options
def replay(
    ledger: Path = typer.Argument(None, help="SQLite ledger file (default .ledgerbus/ledger.db; ignored with --url)"),
    url: str = typer.Option(None, "--url", help="read the live JetStream LEDGER at this NATS URL instead of a file"),
    prefix: str = PrefixOption,
    conversation: list[str] = typer.Option([], "--conversation", "-c",
                                           help="conversation id or a unique prefix of one (repeatable; default: all)"),
    agent: list[str] = typer.Option([], "--agent", "-a", help="only events sent or received by this agent"),
    action: list[str] = typer.Option([], "--action", help="only these actions (REQUEST, ACK, …)"),
    capability: list[str] = typer.Option([], "--capability", help="only events of this capability"),
    since: str = typer.Option(None, "--since", help="only events at or after this time (ISO, or @unix-ms)"),
    until: str = typer.Option(None, "--until", help="state as it was at this position (42) or time (ISO, @unix-ms)"),
    mode: str = typer.Option("reconstruct", "--mode", help="reconstruct (fold; never publishes) | resimulate | re-execute"),
    max_requests: int = typer.Option(None, "--max-requests", min=0, help="re-execute: budget of REQUESTs it may send"),
    task: list[str] = typer.Option([], "--task", help="re-execute: run this task again (repeatable; default: the unfinished ones)"),
    timeline: bool = typer.Option(True, "--timeline/--no-timeline", help="print the event timeline"),
    summary: bool = typer.Option(False, "--summary", help="one line per conversation, even for a few"),
    upcast: bool = typer.Option(True, "--upcast/--no-upcast", help="bring old payload versions up to today's"),
    load: list[str] = typer.Option([], "--load", help="import this module first (registers capabilities/upcasters)"),
    decomposer: str = DecomposerOption,
    policies: str = PoliciesOption,
    as_json: bool = JsonOption,
    as_jsonl: bool = JsonlOption,
) -> None:
    """Print each conversation's timeline and the state the fold rebuilds: tasks, status, attempts, results.

    Examples:

      ledgerbus replay .ledgerbus/ledger.db

      ledgerbus replay .ledgerbus/ledger.db -c 0193… --until 42 --json

      ledgerbus replay --url nats://127.0.0.1:4222 --agent writing --since 2026-11-24T04:00Z

      ledgerbus replay .ledgerbus/ledger.db -c 0193… --mode resimulate

      ledgerbus replay .ledgerbus/ledger.db -c 0193… --mode re-execute --max-requests 20 --url nats://…

      ledgerbus replay .ledgerbus/ledger.db -c 0193… --mode re-execute --task 0193…_edit --max-requests 3

      ledgerbus replay .ledgerbus/ledger.db -c 0193… --mode resimulate --decomposer ./my_pipeline.py:Pipeline
    """
    fmt = choose(as_json, as_jsonl)
    if mode not in MODES:
        fail(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "reconstruct" and (decomposer or policies):
        fail("--decomposer and --policies run an orchestrator: they go with --mode resimulate or re-execute")
    _load(load)
    flt, point = parse_filter(conversation, agent, action, capability, since, until)
    if mode != "reconstruct":
        from ledgerbus.cli.replay_modes import run_mode

        pipeline = pipeline_or_fail(decomposer, policies)
        run_mode(mode, ledger, url, prefix, conversation, point, max_requests, fmt.machine, task, pipeline)
        return
    sink = ReplaySink(console, conversations=tuple(conversation), timeline=timeline, summary=summary,
                      fmt=fmt, upcast=upcast, point=point)
    if url:
        run(_from_stream(url, prefix, flt, sink))
    else:
        _from_file(ledger or Path(".ledgerbus/ledger.db"), flt, sink)
    sink.finish()


def _load(modules: list[str]) -> None:
    import importlib

    if not modules:  # the built-in capabilities
        from ledgerbus.examples import register

        register()
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            fail(f"--load {name}: {exc}")


def _from_file(path: Path, flt: Any, sink: ReplaySink) -> None:
    from ledgerbus.errors import ConfigError, StoreError
    from ledgerbus.eventstore.sqlite import SQLiteEventStore

    try:
        store = SQLiteEventStore(path, readonly=True)
    except StoreError as exc:
        fail(str(exc), 2)
    try:
        if sink.selected:
            from ledgerbus.cli.idprefix import resolve_in_store

            flt = _select(sink, flt, resolve_in_store(store, sink.selected))
        _feed_file(store, path, flt, sink)
    except StoreError as exc:
        fail(str(exc), 2)
    except ConfigError as exc:  # an ambiguous prefix
        fail(str(exc))
    finally:
        store.close()


def _feed_file(store: Any, path: Path, flt: Any, sink: ReplaySink) -> None:
    from ledgerbus.cli.ledger_view import SMALL_LEDGER

    if not sink.selected and not sink.summary:
        ids = store.conversation_ids(limit=SMALL_LEDGER + 1)
        if 0 < len(ids) <= SMALL_LEDGER:
            sink.select(ids)
    from ledgerbus.cli.damaged import warn_damaged

    total = store.count_matching(flt) if is_tty() else None
    damaged: list[Any] = []
    with sink.progress(total, f"replaying {path}") as advance:
        chunk = []
        for ev in store.read(flt, trusted=True, damaged=damaged):
            chunk.append(ev)
            if len(chunk) == 5000:
                sink.feed(chunk)
                advance(len(chunk))
                chunk = []
        sink.feed(chunk)
        advance(len(chunk))
    warn_damaged(damaged)
    sink.source = str(path)
    from ledgerbus.eventstore.compact import snapshot

    for cid in sink.selected:
        if cid not in sink.open and (snap := snapshot(store, cid)) is not None:
            sink.open[cid] = snap  # compacted: its events are gone, its final state is kept
            sink.compacted.append(cid)


def _select(sink: ReplaySink, flt: Any, ids: list[str]) -> Any:
    """The sink and the filter narrowed to `ids`, the conversations -c's prefixes named."""
    import msgspec

    sink.select(ids)
    return msgspec.structs.replace(flt, conversation_ids=tuple(ids))


async def _from_stream(url: str, prefix: str | None, flt: Any, sink: ReplaySink) -> None:
    from ledgerbus.cli.live import connect
    from ledgerbus.eventstore.jetstream import JetStreamLedger

    bus = await connect(url, Path(os.environ.get("LEDGERBUS_DATA_DIR") or ".ledgerbus"), prefix=prefix, name="ledgerbus-replay")
    try:
        if sink.selected:
            from ledgerbus.cli.idprefix import resolve_in_stream

            flt = _select(sink, flt, await resolve_in_stream(bus, sink.selected))
        source = JetStreamLedger(bus)
        total = (await source.last_position() - flt.after) if is_tty() else None
        with sink.progress(total, f"replaying {bus.subjects.stream} at {url}") as advance:
            async for chunk in source.batches(flt):
                sink.feed(chunk)
                advance(len(chunk))
        sink.rejected = len(source.rejects)
        sink.source = f"{bus.subjects.stream} at {url}"
    finally:
        await bus.close()
