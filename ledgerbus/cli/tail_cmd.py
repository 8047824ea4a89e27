"""`ledgerbus tail`: the ledger as it happens, one line per event, filtered like `nats sub`."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from ledgerbus.bus.messages import stream_sequence
from ledgerbus.cli.common import DataDirOption, UrlOption, console, err_console, run
from ledgerbus.cli.idprefix import ShortIds, resolve_in_stream
from ledgerbus.cli.live import PrefixOption, decode
from ledgerbus.cli.output import Format, JsonlOption, JsonOption, choose, line as json_line
from ledgerbus.cli.render import ACTION_STYLE, short
from ledgerbus.eventstore.base import Rejected, StoredEvent
from ledgerbus.cli.connopts import connection_options


@dataclass(frozen=True)
class TailFilter:
    conversations: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()  # sender or recipient
    actions: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()

    def matches(self, ev: StoredEvent | Rejected) -> bool:
        if isinstance(ev, Rejected):
            return not (self.conversations or self.agents or self.actions or self.capabilities)
        e = ev.envelope
        return ((not self.conversations or e.conversation_id in self.conversations)
                and (not self.agents or e.sender in self.agents or e.recipient in self.agents)
                and (not self.actions or e.action.value in self.actions)
                and (not self.capabilities or e.capability in self.capabilities))


def line(ev: StoredEvent | Rejected, short_id: ShortIds | None = None) -> str:
    """One colourised line: time, conversation (a prefix `-c` takes), sender → recipient, action,
    capability, short payload."""
    if isinstance(ev, Rejected):
        return f"[dim]{ev.position:>6}[/] [bold red]REJECTED[/] {escape(ev.subject)}  {escape(ev.code)}: {escape(ev.reason)}"
    e = ev.envelope
    when = datetime.fromtimestamp(e.timestamp / 1000).strftime("%H:%M:%S.%f")[:-3]
    act = e.action.value
    what = f"{e.error.code}: {e.error.message}" if e.error is not None else short(e.payload, 80)
    attempt = f" #{e.attempt}" if e.attempt > 1 else ""
    cid = (short_id or ShortIds())(e.conversation_id)
    return (f"[dim]{when}[/] [magenta]{cid}[/] {e.sender} → {e.recipient} "
            f"[{ACTION_STYLE.get(act, '')}]{act}{attempt}[/] [cyan]{escape(e.capability)}[/] {escape(what)}")


def as_dict(ev: StoredEvent | Rejected) -> dict[str, Any]:
    import msgspec

    if isinstance(ev, Rejected):
        return {"position": ev.position, "rejected": True, "subject": ev.subject, "code": ev.code, "reason": ev.reason}
    return {"position": ev.position, **msgspec.to_builtins(ev.envelope)}


@connection_options
def tail(
    conversation: list[str] = typer.Option([], "--conversation", "-c",
                                           help="only this conversation: its id, or a unique prefix (repeatable)"),
    agent: list[str] = typer.Option([], "--agent", "-a", help="only events sent or received by this agent (repeatable)"),
    action: list[str] = typer.Option([], "--action", help="only these actions: REQUEST, ACK, PROGRESS, RESPONSE, ERROR"),
    capability: list[str] = typer.Option([], "--capability", help="only this capability (repeatable)"),
    since_start: bool = typer.Option(False, "--all", help="start from the beginning of the ledger"),
    last: int = typer.Option(0, "--last", "-n", min=0, help="start with the newest N ledger positions"),
    count: int = typer.Option(0, "--count", min=0, help="exit after printing this many events"),
    idle: float = typer.Option(0.0, "--idle", min=0.0, help="exit after this many seconds without an event"),
    url: str = UrlOption,
    prefix: str = PrefixOption,
    data_dir: Path = DataDirOption,
    as_json: bool = JsonOption,
    as_jsonl: bool = JsonlOption,
) -> None:
    """Print ledger events live, one colourised line each; filter by conversation, agent, action.

    Each line: time, conversation, sender → recipient, action, capability, short payload. The
    conversation is shown by a prefix that `-c` takes back, like git's short hashes. With --jsonl one
    envelope a line as it arrives; with --json one array when tail stops (--count, --idle, Ctrl-C).

    Examples:

      ledgerbus tail

      ledgerbus tail -c 0193a1b2… --all

      ledgerbus tail --agent research --action ERROR --jsonl | jq .error

      ledgerbus tail --last 20 --count 20
    """
    acts = tuple(a.upper() for a in action)
    bad = [a for a in acts if a not in ("REQUEST", "ACK", "PROGRESS", "RESPONSE", "ERROR")]
    if bad:
        from ledgerbus.cli.common import fail

        fail(f"unknown action {bad[0]!r}: use REQUEST, ACK, PROGRESS, RESPONSE or ERROR")
    flt = TailFilter(tuple(conversation), tuple(agent), acts, tuple(capability))
    fmt = choose(as_json, as_jsonl)
    run(_tail(url, prefix, data_dir, flt, since_start, last, count, idle, fmt))


async def _tail(url: str | None, prefix: str | None, data_dir: Path, flt: TailFilter, since_start: bool,
                last: int, count: int, idle: float, fmt: Format) -> None:
    from ledgerbus.cli.live import connect

    bus = await connect(url, data_dir, prefix=prefix)
    try:
        flt = replace(flt, conversations=tuple(await resolve_in_stream(bus, flt.conversations)))
    except BaseException:
        await bus.close()
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread (tests) or no signals
            pass
    queue: asyncio.Queue[StoredEvent | Rejected] = asyncio.Queue()

    async def on_msg(msg: Any) -> None:
        queue.put_nowait(decode(bus, stream_sequence(msg), msg.subject, msg.data))

    # One conversation can be filtered by the server (its subject); everything else is filtered here.
    subject = bus.subjects.conversation(flt.conversations[0]) if len(flt.conversations) == 1 else bus.subjects.all()
    start: int | None = None
    if last and not since_start:
        info = await bus.stream_info()
        start = max(info.first_seq, info.last_seq - last + 1, 1)
    sub = await bus.ordered(subject, start_seq=start, new=not since_start and not last, cb=on_msg)
    err_console.print(f"[dim]tailing {subject} on {bus.url} (Ctrl-C to stop)[/]", highlight=False)
    printed = 0
    short_id = ShortIds()
    collected: list[dict[str, Any]] = []  # --json: one document when tail stops
    stopper = asyncio.create_task(stop.wait())
    try:
        while not stop.is_set():
            getter = asyncio.create_task(queue.get())
            done, _ = await asyncio.wait({getter, stopper}, timeout=idle or None, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                break  # stopped, or idle for --idle seconds
            ev = getter.result()
            if not flt.matches(ev):
                continue
            if fmt is Format.JSONL:
                json_line(as_dict(ev))
            elif fmt is Format.JSON:
                collected.append(as_dict(ev))
            else:
                console.print(line(ev, short_id), highlight=False, soft_wrap=True)
            printed += 1
            if count and printed >= count:
                break
    finally:
        stopper.cancel()
        await sub.close()
        await bus.close()
        if fmt is Format.JSON:
            json_line(collected)
