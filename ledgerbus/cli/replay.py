"""`ledgerbus replay`: rebuild state from a recorded ledger by folding it. Reconstruct never publishes.

Sources: a SQLite ledger file, or the live JetStream LEDGER (`--url`, read through an ephemeral
consumer that acknowledges nothing). Both stream in batches, so memory does not grow with the
ledger: with a few conversations selected it prints each one's timeline and state; over a whole
ledger it prints one line per conversation as each ends.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import typer

from ledgerbus.cli.common import DEFAULT_LEDGER, JsonOption, console, fail, is_tty, run
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
    run(_replay(None if url else (ledger or Path(DEFAULT_LEDGER)), url, prefix, flt, sink))
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


async def _replay(ledger: Path | None, url: str | None, prefix: str | None, flt: Any, sink: ReplaySink) -> None:
    from ledgerbus.cli.damaged import warn_damaged
    from ledgerbus.cli.idprefix import resolve
    from ledgerbus.cli.ledger_view import SMALL_LEDGER
    from ledgerbus.cli.sources import open_source

    data_dir = Path(os.environ.get("LEDGERBUS_DATA_DIR") or ".ledgerbus")
    async with open_source(ledger, url, data_dir, prefix, name="ledgerbus-replay", trusted=True) as opened:
        source, store = opened.source, opened.store
        if sink.selected:
            flt = _select(sink, flt, await resolve(source, sink.selected))
        elif not sink.summary:
            ids = await source.conversation_ids(limit=SMALL_LEDGER + 1)
            if 0 < len(ids) <= SMALL_LEDGER:
                sink.select(ids)
        total = (await source.last_position() - flt.after) if is_tty() else None
        with sink.progress(total, f"replaying {opened.where}") as advance:
            async for chunk in source.batches(flt):
                sink.feed(chunk)
                advance(len(chunk))
        warn_damaged(source.damaged)
        sink.rejected = len(source.rejects)
        sink.source = opened.where
        if store is not None:
            from ledgerbus.eventstore.compact import snapshot

            for cid in sink.selected:
                if cid not in sink.open and (snap := await asyncio.to_thread(snapshot, store, cid)) is not None:
                    sink.open[cid] = snap  # compacted: its events are gone, its final state is kept
                    sink.compacted.append(cid)


def _select(sink: ReplaySink, flt: Any, ids: list[str]) -> Any:
    """The sink and the filter narrowed to `ids`, the conversations -c's prefixes named."""
    import msgspec

    sink.select(ids)
    return msgspec.structs.replace(flt, conversation_ids=tuple(ids))
