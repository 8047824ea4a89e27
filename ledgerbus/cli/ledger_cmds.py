"""Ledger debugging commands: diff, export, import, verify, compact, fork, retention."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import typer

from ledgerbus.cli.common import DataDirOption, JsonOption, UrlOption, console, fail, run
from ledgerbus.cli.pipeline_specs import DecomposerOption, PoliciesOption, pipeline_or_fail
from ledgerbus.cli.connopts import connection_options
from ledgerbus.cli.live import PrefixOption
from ledgerbus.cli.output import JsonlOption, choose, emit

DEFAULT_LEDGER = Path(".ledgerbus/ledger.db")


def _store(path: Path, *, readonly: bool = True, create: bool = False) -> Any:
    from ledgerbus.errors import StoreError
    from ledgerbus.eventstore.sqlite import SQLiteEventStore

    if not create and not path.exists():
        fail(f"no ledger at {path}", 2)  # opening it writable would create an empty one and call it intact
    try:
        return SQLiteEventStore(path, readonly=readonly)
    except StoreError as exc:
        fail(str(exc), 2)


def _events(path: Path, conversation: str) -> list[Any]:
    """The events of one conversation, named by its id or a unique prefix of it."""
    from ledgerbus.cli.idprefix import resolve_in_store
    from ledgerbus.eventstore.base import EventFilter

    from ledgerbus.cli.damaged import warn_damaged

    store = _store(path)
    damaged: list[Any] = []
    try:
        conversation = _resolved(lambda: resolve_in_store(store, [conversation]))[0]
        events = list(store.read(EventFilter(conversation_ids=(conversation,)), damaged=damaged))
    finally:
        store.close()
    warn_damaged(damaged)
    if not events:
        fail(f"conversation {conversation} has no events in {path}")
    return events


def _resolved(resolve: Any) -> list[str]:
    from ledgerbus.errors import ConfigError

    try:
        return list(resolve())
    except ConfigError as exc:  # an ambiguous prefix
        fail(str(exc))


def _print(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=str) + "\n")


# -- diff ---------------------------------------------------------------------------------------


def diff(
    ledger: Path = typer.Argument(..., help="SQLite ledger file"),
    conversation: str = typer.Argument(..., help="conversation id"),
    at: list[str] = typer.Option([], "--at", help="a point: position (42) or time (ISO, @unix-ms); give two"),
    against: str = typer.Option(None, "--against", help="instead of --at: another conversation (e.g. a fork)"),
    as_json: bool = JsonOption,
) -> None:
    """Show what changed in a conversation's state between two points, or between it and another conversation.

    Examples:

      ledgerbus diff .ledgerbus/ledger.db 0193… --at 12 --at 30

      ledgerbus diff .ledgerbus/ledger.db 0193… --at 2026-11-24T04:15:00Z --at @1764000000000

      ledgerbus diff .ledgerbus/ledger.db 0193… --against 0194…   (a fork and its original)
    """
    from ledgerbus.errors import ConfigError
    from ledgerbus.eventstore.fold import fold
    from ledgerbus.eventstore.timetravel import ABSENT, diff_conversations, diff_states, parse_point, state_at

    events = _events(ledger, conversation)
    if against:
        changes = diff_conversations(fold(events), fold(_events(ledger, against)))
        labels = (conversation, against)
    else:
        if len(at) != 2:
            fail("give two points: --at A --at B (or --against ANOTHER_CONVERSATION)")
        try:
            a, b = parse_point(at[0]), parse_point(at[1])
        except ConfigError as exc:
            fail(str(exc))
        changes = diff_states(state_at(events, conversation, a), state_at(events, conversation, b))
        labels = (str(a), str(b))
    if as_json:
        # A field that is not there is null in JSON, and `change` says whether it came or went.
        _print({"from": labels[0], "to": labels[1],
                "changes": [{"path": c.path, "before": None if c.before is ABSENT else c.before,
                             "after": None if c.after is ABSENT else c.after,
                             "change": "added" if c.before is ABSENT else "removed" if c.after is ABSENT else "changed"}
                            for c in changes]})
        return
    from rich.table import Table

    from ledgerbus.cli.render import short

    table = Table(title=f"{len(changes)} changes from {labels[0]} to {labels[1]}", header_style="bold")
    for col in ("field", "before", "after"):
        table.add_column(col, overflow="fold")
    for c in changes:
        table.add_row(c.path, short(c.before, 60), short(c.after, 60))
    console.print(table)


# -- export / import ----------------------------------------------------------------------------


@connection_options
def export(
    ledger: Path = typer.Argument(None, help="SQLite ledger file (or use --url for the live stream)"),
    out: Path = typer.Option(None, "--out", "-o", help="JSONL file to write (default: stdout)"),
    conversation: list[str] = typer.Option([], "--conversation", "-c", help="only these conversations"),
    url: str = typer.Option(None, "--url", help="export the live JetStream LEDGER at this URL"),
    prefix: str = PrefixOption,
) -> None:
    """Write a ledger as JSONL (one envelope per line, with its position and chain hash), e.g. for a bug report.

    Examples:

      ledgerbus export .ledgerbus/ledger.db -o bug-1234.jsonl -c 0193…

      ledgerbus export --url nats://127.0.0.1:4222 > ledger.jsonl
    """
    from ledgerbus.eventstore.jsonl import export_store

    try:
        sink = open(out, "wb") if out else sys.stdout.buffer
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror}", 2)
    try:
        if url:
            n = run(_export_stream(url, prefix, tuple(conversation), sink))
        else:
            from ledgerbus.cli.progress import bar

            from ledgerbus.cli.idprefix import resolve_in_store

            store = _store(ledger or DEFAULT_LEDGER)
            try:
                cids = tuple(_resolved(lambda: resolve_in_store(store, conversation)))
                with bar("exporting the ledger") as tick:
                    n = export_store(store, sink, conversation_ids=cids, progress=tick)
            finally:
                store.close()
    finally:
        if out:
            sink.close()
    if out:
        console.print(f"exported {n} entries to {out}")


async def _export_stream(url: str, prefix: str | None, cids: tuple[str, ...], sink: Any) -> int:
    from ledgerbus.cli.live import connect
    from ledgerbus.eventstore.base import EventFilter
    from ledgerbus.eventstore.jetstream import JetStreamLedger
    from ledgerbus.eventstore.jsonl import export_stream

    bus = await connect(url, Path(os.environ.get("LEDGERBUS_DATA_DIR") or ".ledgerbus"), prefix=prefix, name="ledgerbus-export")
    try:
        from ledgerbus.cli.idprefix import resolve_in_stream

        cids = tuple(await resolve_in_stream(bus, cids))
        return await export_stream(JetStreamLedger(bus).batches(EventFilter(conversation_ids=cids)), sink)
    finally:
        await bus.close()


@connection_options
def import_(
    source: Path = typer.Argument(..., help="JSONL ledger (from `ledgerbus export`)"),
    into: Path = typer.Option(None, "--into", help="SQLite ledger file to append to (created if missing)"),
    url: str = typer.Option(None, "--url", help="instead: publish into the JetStream LEDGER at this URL"),
    prefix: str = PrefixOption,
    force: bool = typer.Option(False, "--force", help="import even when lines do not match their hashes"),
    as_json: bool = JsonOption,
) -> None:
    """Load a JSONL ledger into a SQLite file (positions kept) or a JetStream stream, to replay it elsewhere.

    Examples:

      ledgerbus import bug-1234.jsonl --into /tmp/bug.db && ledgerbus replay /tmp/bug.db

      ledgerbus import bug-1234.jsonl --url nats://127.0.0.1:4222 --prefix bug1234
    """
    from ledgerbus.errors import StoreError

    try:
        _import(source, into, url, prefix, force, as_json)
    except StoreError as exc:
        fail(f"{source}: {exc}")


def _import(source: Path, into: Path | None, url: str | None, prefix: str | None, force: bool, as_json: bool) -> None:
    from ledgerbus.eventstore.integrity import chain_hash
    from ledgerbus.eventstore.jsonl import decode_entry, import_into_store, parse, read_lines

    if not source.exists():
        fail(f"no such file: {source}", 2)
    if (into is None) == (url is None):
        fail("say where to import: --into FILE.db or --url NATS_URL")
    # A first pass checks every line, so a bad one stops the import before anything is written.
    bad = []
    lines = 0
    for e in parse(read_lines(source)):
        lines += 1
        if e.raw is not None:
            decode_entry(e)
            if e.hash is not None and chain_hash(e.prev_hash or "", e.raw) != e.hash:
                bad.append(e.position)
    if not force:
        if bad:
            fail(f"{len(bad)} lines do not match their hashes (first: position {bad[0]}); the file was edited. "
                 "--force imports it anyway")
    if url:
        report = run(_import_stream(url, prefix, source))
        where = f"JetStream at {url}"
    else:
        from ledgerbus.cli.progress import bar

        assert into is not None  # exactly one of --into and --url, checked above
        store = _store(into, readonly=False, create=True)
        try:
            with bar(f"importing {source.name}") as tick:
                report = import_into_store(store, read_lines(source), progress=tick, total=lines)
        finally:
            store.close()
        where = str(into)
    if as_json:
        _print({"events": report.events, "new": report.new, "rejects": report.rejects,
                "hashMismatches": report.hash_mismatches, "into": where})
        return
    console.print(f"imported {report.new} new of {report.events} envelopes into {where}"
                  + (f"; {report.rejects} rejected messages" if report.rejects else ""))


async def _import_stream(url: str, prefix: str | None, source: Path) -> Any:
    from ledgerbus.cli.live import connect
    from ledgerbus.eventstore.jsonl import import_into_stream, read_lines

    bus = await connect(url, Path(os.environ.get("LEDGERBUS_DATA_DIR") or ".ledgerbus"), prefix=prefix, name="ledgerbus-import")
    try:
        return await import_into_stream(bus, read_lines(source))
    finally:
        await bus.close()


# -- verify / compact ---------------------------------------------------------------------------


def verify(
    ledger: Path = typer.Argument(DEFAULT_LEDGER, help="SQLite ledger file"),
    as_json: bool = JsonOption,
    as_jsonl: bool = JsonlOption,
) -> None:
    """Check every conversation's hash chain: report altered, missing, reordered or inserted events, and gaps.

    Exit code 0 when the ledger is intact, 1 when anything is wrong.

    Examples:

      ledgerbus verify .ledgerbus/ledger.db

      ledgerbus verify bug.db --json
    """
    fmt = choose(as_json, as_jsonl)
    import sqlite3

    store = _store(ledger)  # read-only: verify never writes (chaining an edited file would bless the edit)
    try:
        report = store.verify()
        gaps = store.gaps()
        duplicates = store.duplicates()
    except sqlite3.Error as exc:  # a table or column the checks read was dropped or retyped
        fail(f"{ledger}: the ledger's tables were altered beyond checking ({exc})")
    finally:
        store.close()
    if fmt.machine:
        emit(fmt, {"ok": report.ok, "events": report.events, "conversations": report.conversations,
                "issues": [{"kind": i.kind.value, "conversationId": i.conversation_id, "position": i.position,
                            "message": i.message} for i in report.issues],
                "gaps": [{"first": a, "last": b} for a, b in gaps],
                "duplicates": [{"position": p, "id": i, "firstPosition": f} for p, i, f in duplicates]})
    else:
        for i in report.issues:
            where = f"conversation {i.conversation_id}" if i.conversation_id else "the ledger"
            console.print(f"[bold red]{i.kind.value}[/] position {i.position} ({where}): {i.message}", highlight=False)
        for a, b in gaps:
            console.print(f"[yellow]GAP[/] JetStream sequences {a}..{b} never reached this ledger "
                          "(removed by retention before the recorder saw them)")
        for p, i, f in duplicates:
            console.print(f"[yellow]DUPLICATE[/] position {p} repeats envelope {i} (first at position {f}); "
                          "kept, folded once", highlight=False)
        verdict = "[green]intact[/]" if report.ok else f"[bold red]{len(report.issues)} problems[/]"
        console.print(f"{ledger}: {report.events} events in {report.conversations} conversations — {verdict}")
    if not report.ok:
        raise typer.Exit(1)


def compact(
    ledger: Path = typer.Argument(DEFAULT_LEDGER, help="SQLite ledger file"),
    older_than: str = typer.Option(None, "--older-than", help="only conversations that ended longer ago (30d, 12h, 90m)"),
    conversation: list[str] = typer.Option([], "--conversation", "-c", help="only these conversations"),
    vacuum: bool = typer.Option(True, "--vacuum/--no-vacuum", help="give the freed space back to the filesystem"),
    as_json: bool = JsonOption,
) -> None:
    """Replace finished conversations' events by a snapshot of their state; the chain stays verifiable.

    Examples:

      ledgerbus compact .ledgerbus/ledger.db --older-than 30d
    """
    import msgspec

    from ledgerbus.bus.retention import parse_duration
    from ledgerbus.errors import ConfigError
    from ledgerbus.eventstore.compact import compact as do_compact
    from ledgerbus.ids import now_ms

    try:
        cutoff = now_ms() - int(parse_duration(older_than) * 1000) if older_than else None
    except ConfigError as exc:
        fail(str(exc))
    from ledgerbus.cli.idprefix import resolve_in_store

    store = _store(ledger, readonly=False)
    try:
        cids = tuple(_resolved(lambda: resolve_in_store(store, conversation)))
        report = do_compact(store, ended_before_ms=cutoff, conversation_ids=cids, vacuum=vacuum)
    finally:
        store.close()
    from ledgerbus.cli.damaged import warn_damaged

    warn_damaged(report.damaged)
    if as_json:
        _print({"conversations": report.conversations, "events": report.events,
                "skippedRunning": report.skipped_running, "bytesBefore": report.bytes_before,
                "bytesAfter": report.bytes_after, "bytesFreed": report.bytes_freed,
                "damaged": [msgspec.to_builtins(d) for d in report.damaged], "keptDamaged": report.kept_damaged})
        return
    for cid in report.kept_damaged:
        console.print(f"kept {cid} as it is: it holds damaged events (see `ledgerbus verify`)", highlight=False)
    freed = (f"freed {report.bytes_freed:,} bytes" if report.bytes_freed >= 0
             else f"the ledger grew by {-report.bytes_freed:,} bytes (--vacuum gives the space back)")
    console.print(f"compacted {report.conversations} conversations ({report.events} events) into snapshots; "
                  f"{report.skipped_running} still running were kept; {freed} "
                  f"({report.bytes_before:,} → {report.bytes_after:,} bytes on disk, with the WAL)")


# -- fork ---------------------------------------------------------------------------------------


@connection_options
def fork(
    ledger: Path = typer.Argument(..., help="SQLite ledger file holding the conversation"),
    conversation: str = typer.Argument(..., help="conversation to fork"),
    at: int = typer.Option(..., "--at", help="copy the conversation's events up to this position"),
    payload: str = typer.Option(None, "--payload", help="JSON object merged into the edited event's payload"),
    replace: bool = typer.Option(False, "--replace", help="replace the payload instead of merging into it"),
    event: int = typer.Option(None, "--event", help="position of the event to edit (default: the root REQUEST)"),
    max_requests: int = typer.Option(None, "--max-requests", min=0, help="budget of REQUESTs the fork may send"),
    decomposer: str = DecomposerOption,
    policies: str = PoliciesOption,
    url: str = UrlOption,
    data_dir: Path = DataDirOption,
    prefix: str = PrefixOption,
    as_json: bool = JsonOption,
) -> None:
    """Re-run a conversation from position N with an edited payload, as a new conversation; the original stays intact.

    The fork runs live: agents must be serving (e.g. `ledgerbus up` + your agents). Compare the two
    afterwards with `ledgerbus diff LEDGER ORIGINAL --against FORK`.

    Examples:

      ledgerbus fork .ledgerbus/ledger.db 0193… --at 3 --payload '{"topic": "cuckoo filters"}'

      ledgerbus fork .ledgerbus/ledger.db 0193… --at 3 --decomposer ./my_pipeline.py:Pipeline
    """
    body: dict[str, Any] | None = None
    if payload is not None:
        try:
            body = json.loads(payload)
        except json.JSONDecodeError as exc:
            fail(f"--payload is not JSON: {exc}")
        if not isinstance(body, dict):
            fail("--payload must be a JSON object")
    pipeline = pipeline_or_fail(decomposer, policies)
    events = _events(ledger, conversation)
    report = run(_fork(url, data_dir, prefix, events, at, body, event, not replace, max_requests, pipeline))
    result = report.result
    if as_json:
        _print({"original": report.original, "fork": report.fork, "copied": report.copied,
                "status": result.status.value if result else None})
        return
    console.print(f"forked {report.original} at position {at} into [bold]{report.fork}[/] "
                  f"({report.copied} events copied): {result.status.value if result else 'nothing to run'}")
    console.print(f"compare: ledgerbus diff {ledger} {report.original} --against {report.fork}")


async def _fork(url: str | None, data_dir: Path, prefix: str | None, events: list[Any], at: int,
                body: dict[str, Any] | None, event: int | None, merge: bool, max_requests: int | None,
                pipeline: tuple[Any, Any]) -> Any:
    from ledgerbus.cli.live import connect
    from ledgerbus.cli.replay_modes import decomposer_for
    from ledgerbus.orchestrator.replaymodes import fork as do_fork

    decomposer, policies = pipeline
    decomposer = decomposer_for(events, decomposer)  # before connecting: a decomposer that cannot plan it fails here
    bus = await connect(url, data_dir, prefix=prefix, name="ledgerbus-fork")
    try:
        return await do_fork(bus, events, at, payload=body, edit_position=event, merge=merge,
                             decomposer=decomposer, policies=policies, max_requests=max_requests)
    finally:
        await bus.close()


# -- retention ----------------------------------------------------------------------------------


@connection_options
def retention(
    max_age: str = typer.Option(None, "--max-age", envvar="LEDGERBUS_LEDGER_MAX_AGE",
                                help="drop ledger messages older than this (30d, 12h; 0 = forever)"),
    max_bytes: str = typer.Option(None, "--max-bytes", envvar="LEDGERBUS_LEDGER_MAX_BYTES",
                                  help="cap the ledger's size (500MB, 2GiB; 0 = no cap), oldest dropped first"),
    url: str = UrlOption,
    data_dir: Path = DataDirOption,
    prefix: str = PrefixOption,
    as_json: bool = JsonOption,
) -> None:
    """Show the JetStream ledger's retention, or set it with --max-age / --max-bytes.

    Examples:

      ledgerbus retention

      ledgerbus retention --max-age 30d --max-bytes 10GB
    """
    run(_retention(url, data_dir, prefix, max_age, max_bytes, as_json))


async def _retention(url: str | None, data_dir: Path, prefix: str | None, max_age: str | None,
                     max_bytes: str | None, as_json: bool) -> None:
    from ledgerbus.cli.live import connect
    from ledgerbus.bus.retention import apply_retention, describe, parse_bytes, parse_duration

    age = parse_duration(max_age) if max_age is not None else None
    size = parse_bytes(max_bytes) if max_bytes is not None else None
    bus = await connect(url, data_dir, prefix=prefix, name="ledgerbus-retention")
    try:
        info = await apply_retention(bus, max_age=age, max_bytes=size)
    finally:
        await bus.close()
    data = describe(info)
    if as_json:
        _print(data)
        return
    shown = {**data, "maxAge": f"{data['maxAge']:g}s" if data["maxAge"] is not None else "forever",
             "maxBytes": f"{data['maxBytes']:,}" if data["maxBytes"] is not None else "no cap"}
    console.print(", ".join(f"{k}: {v}" for k, v in shown.items()), highlight=False)
