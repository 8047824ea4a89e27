"""What `replay` shows, whatever the source: timelines with gaps, folded state, summaries, JSON.

A ReplaySink is fed batches of events in ledger order. With conversations named it keeps their
events (to print each timeline); over a whole ledger it folds with `Folds` handing over each conversation
as it ends, printing one line for it, so memory follows the open conversations, not the ledger's length.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

from ledgerbus.cli.output import Format, dumps
from ledgerbus.cli.render import ACTION_STYLE, STATUS_STYLE, detail, state_json, state_table, task_label
from ledgerbus.eventstore.base import EventFilter, StoredEvent
from ledgerbus.eventstore.fold import ConversationState
from ledgerbus.eventstore.folds import Folds
from ledgerbus.eventstore.timetravel import Point, parse_point
from ledgerbus.eventstore.upcast import Upcaster

#: A silence this long between two events of a conversation is worth pointing at (a stall, a retry wait).
GAP_MS = 1000
#: A ledger with this few conversations is shown in full (timelines and state) even without -c.
SMALL_LEDGER = 5
#: Whole-ledger replay lists at most this many conversations that did not end DONE (the rest are counted).
NOTABLE = 50


def parse_filter(conversation: Sequence[str], agent: Sequence[str], action: Sequence[str], capability: Sequence[str],
                 since: str | None, until: str | None) -> tuple[EventFilter, Point | None]:
    from ledgerbus.errors import ConfigError
    from ledgerbus.schemas.codes import Action

    actions = tuple(a.upper() for a in action)
    bad = [a for a in actions if a not in Action.__members__]
    if bad:
        _fail(f"unknown action {bad[0]!r}; one of {', '.join(Action.__members__)}")
    try:
        since_ms = parse_point(since).time_ms if since else None
        if since and since_ms is None:
            _fail("--since takes a time (ISO or @unix-ms), not a position")
        point = parse_point(until) if until else None
    except ConfigError as exc:
        _fail(str(exc))
    flt = EventFilter(conversation_ids=tuple(conversation), agents=tuple(agent), actions=actions,
                      capabilities=tuple(capability), since_ms=since_ms)
    if point is not None:
        flt = point.bound(flt)
    return flt, point


def _fail(message: str) -> None:
    from ledgerbus.cli.common import fail

    fail(message)


def timeline(events: Sequence[StoredEvent], *, title: str | None = None) -> Table:
    """Who sent what to whom, when (+ms from the start), and how long the silence before it was."""
    table = Table(title=title, header_style="bold")
    for col, kw in (("pos", {"justify": "right"}), ("+ms", {"justify": "right"}), ("gap", {"justify": "right"}),
                    ("from → to", {"min_width": 20}), ("action", {"min_width": 8}), ("task", {"min_width": 8}),
                    ("detail", {"overflow": "ellipsis", "max_width": 60})):
        table.add_column(col, no_wrap=True, **kw)
    start = events[0].envelope.timestamp if events else 0
    prev = start
    for ev in events:
        e = ev.envelope
        gap = e.timestamp - prev
        gap_txt = f"[bold yellow]{gap}[/]" if gap >= GAP_MS else str(gap)
        table.add_row(str(ev.position), str(e.timestamp - start), gap_txt, f"{e.sender} → {e.recipient}",
                      f"[{ACTION_STYLE.get(e.action.value, '')}]{e.action.value}[/]" + (f" #{e.attempt}" if e.attempt > 1 else ""),
                      task_label(e.task_id, e.conversation_id), detail(ev))
        prev = e.timestamp
    return table


def summary_row(st: ConversationState) -> list[str]:
    """One conversation as a few short strings: what a whole-ledger replay keeps once it has ended."""
    failed = sum(1 for t in st.tasks.values() if t.status.value in ("FAILED", "STALLED", "TIMED_OUT"))
    why = f"{st.error.code}: {st.error.message}" if st.error else ""
    return [st.conversation_id, st.capability or "", f"[{STATUS_STYLE.get(st.status.value, '')}]{st.status.value}[/]",
            str(st.events), str(len(st.tasks)), str(failed),
            str(st.duration_ms) if st.duration_ms is not None else "—", why[:120]]


def summary_table(rows: Sequence[list[str]], console: Console | None = None) -> Table:
    from ledgerbus.cli.common import console as default_console
    from ledgerbus.cli.output import Column, table

    columns = [Column("conversation", is_id=True), Column("capability"), Column("status"),
               *(Column(c, right=True) for c in ("events", "tasks", "failed", "ms")), Column("why")]
    return table(console or default_console, columns, rows, title=f"{len(rows)} conversations",
                 drop=("events", "tasks", "failed", "ms", "capability"))


def event_json(ev: StoredEvent) -> dict[str, Any]:
    return {"position": ev.position, **msgspec.to_builtins(ev.envelope)}


class ReplaySink:
    def __init__(self, console: Console, *, conversations: tuple[str, ...] = (), timeline: bool = True,
                 summary: bool = False, as_json: bool = False, upcast: bool = True, point: Point | None = None,
                 registry: Any = None, fmt: Format | None = None) -> None:
        self.console = console
        self.selected = conversations
        self.want_timeline = timeline and not summary
        self.summary = summary
        self.timeline = self.want_timeline and bool(conversations)
        self.fmt = fmt or (Format.JSON if as_json else Format.TABLE)
        self.as_json = self.fmt.machine
        self.point = point
        self.upcaster: Upcaster | None = None
        if upcast:
            self.upcaster = Upcaster(registry) if registry is not None else Upcaster()
        self.events: dict[str, list[StoredEvent]] = {}
        self.folds = self._folds()
        self.by_status: dict[str, int] = {}
        self.notable: list[list[str]] = []  # whole ledger: the first conversations that did not end DONE
        self.notable_more = 0
        self.streamed = 0  # whole ledger with --json: conversations already written out
        self.orphans: list[str] = []  # "conversations" with no REQUEST: answers to messages that were not envelopes
        self.out = sys.stdout
        self.compacted: list[str] = []  # selected conversations shown from their compaction snapshot
        self.count = 0
        self.rejected = 0
        self.source = ""

    def _folds(self) -> Folds:
        # Whole ledger: a finished conversation is reported and forgotten, so memory follows the open
        # conversations, not the ledger's length; events after its end do not report it again.
        return Folds(on_end=None if self.selected else self._ended)

    @property
    def open(self) -> dict[str, ConversationState]:
        """The conversations folded and not handed over (with conversations selected: all of them)."""
        return self.folds.states

    @property
    def late(self) -> int:
        """Events after their conversation's end (whole ledger)."""
        return self.folds.late

    def select(self, conversation_ids: Sequence[str]) -> None:
        """Show these conversations in full (a small ledger replayed without -c)."""
        self.selected = tuple(conversation_ids)
        self.timeline = self.want_timeline
        self.folds = self._folds()

    @contextlib.contextmanager
    def progress(self, total: int | None, what: str) -> Iterator[Callable[[int], None]]:
        """A progress bar with rate and ETA on a terminal (stderr); nothing at all otherwise."""
        if total is None or not sys.stderr.isatty() or total < 20_000:
            yield lambda n: None
            return
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                                   TimeRemainingColumn)

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                   TextColumn("{task.fields[rate]}"), TimeRemainingColumn())
        with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task(what, total=total, rate="")

            def advance(n: int) -> None:
                bar.advance(task, n)
                speed = bar.tasks[0].speed
                bar.update(task, rate=f"{speed:,.0f} ev/s" if speed else "")

            yield advance

    def feed(self, events: Sequence[StoredEvent]) -> None:
        if self.upcaster is not None:
            events = list(self.upcaster.events(events))
        self.count += len(events)
        if self.timeline:
            for ev in events:
                self.events.setdefault(ev.envelope.conversation_id, []).append(ev)
        self.folds.add_all(events)

    def _ended(self, st: ConversationState) -> None:
        if st.root_task_id is None:
            # No REQUEST: an ERROR answering an undecodable message (conversation "unknown", or the
            # id salvaged from it), not a conversation that is running.
            if len(self.orphans) < NOTABLE:
                self.orphans.append(st.conversation_id)
            return
        status = st.status.value
        self.by_status[status] = self.by_status.get(status, 0) + 1
        if self.as_json:
            item = dumps({"conversationId": st.conversation_id, "state": state_json(st), "events": None})
            if self.fmt is Format.JSONL:
                self.out.write(item + "\n")
            else:
                self.out.write(("[" if not self.streamed else ",") + item)
            self.streamed += 1
        elif status != "DONE":
            if len(self.notable) < NOTABLE:
                self.notable.append(summary_row(st))
            else:
                self.notable_more += 1

    def finish(self) -> None:
        if not self.selected:
            self.folds.finish()
            if self.fmt is Format.JSON:
                self.out.write(("]" if self.streamed else "[]") + "\n")
            if self.as_json:
                return
            counts = ", ".join(f"{n} {s}" for s, n in sorted(self.by_status.items()))
            self.console.print(f"{self.count} events, {sum(self.by_status.values())} conversations: {counts or 'none'}"
                               + (f" (from {self.source})" if self.source else ""), highlight=False)
            if self.notable:
                table = summary_table(self.notable, self.console)
                table.title = "conversations that did not end DONE" + (
                    f" (first {NOTABLE}; {self.notable_more} more — use --json)" if self.notable_more else "")
                self.console.print(table)
            self._notes()
            return
        missing = [c for c in self.selected if c not in self.open]
        if missing and not self.as_json:
            _fail(f"conversation {missing[0]} has no events in {self.source or 'the ledger'}"
                  + (f" up to {self.point}" if self.point else ""))
        states = [self.open[c] for c in self.selected if c in self.open]
        if self.as_json:
            out = [{"conversationId": st.conversation_id, "state": state_json(st),
                    "events": [event_json(e) for e in self.events.get(st.conversation_id, [])] if self.timeline else None}
                   for st in states]
            for doc in out if self.fmt is Format.JSONL else [out]:
                self.out.write(dumps(doc) + "\n")
            return
        if not self.timeline and len(states) > 1:
            self.console.print(summary_table([summary_row(st) for st in states], self.console))
        else:
            for st in states:
                if self.timeline:
                    title = f"timeline of {st.conversation_id}" + (f" up to {self.point}" if self.point else "")
                    self.console.print(timeline(self.events.get(st.conversation_id, []), title=title))
                self.console.print(state_table(st))
        self._notes()

    def _notes(self) -> None:
        notes = []
        if self.upcaster is not None and self.upcaster.upcast:
            notes.append(f"{self.upcaster.upcast} payloads upcast to today's versions")
        if self.upcaster is not None and self.upcaster.problems:
            p = self.upcaster.problems[0]
            notes.append(f"[yellow]{len(self.upcaster.problems)} payloads could not be upcast[/] "
                         f"(first: position {p.position}, {p.capability}: {p.message})")
        if self.rejected:
            notes.append(f"[yellow]{self.rejected} ledger messages are not envelopes[/]")
        if self.orphans:
            notes.append(f"{len(self.orphans)} answer(s) without a REQUEST (errors for messages that were not "
                         f"envelopes), not counted as conversations: {', '.join(self.orphans[:5])}")
        if self.late:
            notes.append(f"{self.late} event(s) arrived after their conversation ended (counted with it once)")
        for cid in self.compacted:
            notes.append(f"{cid} was compacted: its final state is shown from the snapshot, its events are gone")
        for note in notes:
            self.console.print(note)
