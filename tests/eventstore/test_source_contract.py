"""One contract for every EventSource: the same cases, run against a real JetStream stream and a real
SQLite file that hold the same ledger (the file is the recorder's mirror of the stream)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
import pytest_asyncio

from ledgerbus.bus.connection import Bus
from ledgerbus.eventstore.base import EventFilter, EventSource
from ledgerbus.eventstore.jetstream import JetStreamLedger
from ledgerbus.eventstore.recorder import Recorder
from ledgerbus.eventstore.sqlite import SQLiteEventStore
from ledgerbus.eventstore.sqlite_source import SQLiteSource
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import Envelope, ErrorInfo, answer, new_request

KINDS = ["jetstream", "sqlite"]
GARBAGE = b"not an envelope"
SUBJECTS = {"junk": "{}.writing.REQUEST.beta-2", "stray": "{}.stray"}


def _at(env: Envelope, ms: int) -> Envelope:
    return msgspec.structs.replace(env, timestamp=ms)


def _history() -> list[tuple[str, Envelope | None]]:
    """(label, envelope) in ledger order; None stands for a message that is not an envelope: "junk" on beta's
    subject, "stray" on a subject no envelope has."""
    a = _at(new_request(sender="client", recipient="research", capability="research.search", payload={},
                        conversation_id="alpha-1"), 1000)
    b = _at(new_request(sender="client", recipient="writing", capability="writing.draft", payload={},
                        conversation_id="beta-2"), 2000)
    c = _at(new_request(sender="client", recipient="research", capability="research.search", payload={},
                        conversation_id="gamma-3"), 3000)
    return [
        ("a.req", a), ("b.req", b), ("junk", None),
        ("a.ack", _at(answer(a, Action.ACK), 1100)),
        ("b.ack", _at(answer(b, Action.ACK), 2100)),
        ("a.resp", _at(answer(a, Action.RESPONSE, payload={"ok": True}), 1200)),
        ("b.err", _at(answer(b, Action.ERROR, error=ErrorInfo(code="BAD", message="no", retryable=False)), 2200)),
        ("c.req", c), ("stray", None),
    ]


@dataclass
class Ledger:
    """A source filled with `_history()`, and the means to append to it."""

    source: EventSource
    bus: Bus
    recorder: Recorder | None
    labels: dict[str, str] = field(default_factory=dict)  # envelope id -> label
    positions: dict[str, int] = field(default_factory=dict)  # label -> position

    async def publish(self, items: Sequence[tuple[str, Envelope | None]]) -> None:
        ids = []
        for label, env in items:
            if env is None:
                ack = await self.bus.publish_raw(SUBJECTS[label].format(self.bus.subjects.prefix), GARBAGE)
            else:
                ack = await self.bus.publish(env, ensure_consumer=False)
                self.labels[env.id] = label
                ids.append(env.id)
            self.positions[label] = ack.seq
        if self.recorder is not None:
            await self.recorder.catch_up(holding=ids)

    def named(self, events: Sequence[Any]) -> list[str]:
        return [self.labels[ev.envelope.id] for ev in events]


async def _ledger(kind: str, bus: Bus, tmp_path: Path, history: Sequence[tuple[str, Envelope | None]]
                  ) -> AsyncIterator[Ledger]:
    from ledgerbus.bus.streams import LedgerConfig

    await bus.ensure_ledger(LedgerConfig())
    if kind == "jetstream":
        led = Ledger(JetStreamLedger(bus, batch=2, fetch_timeout=0.5), bus, None)
        await led.publish(history)
        yield led
        return
    store = SQLiteEventStore(tmp_path / "ledger.db")
    async with Recorder(bus, store, fetch_timeout=0.2) as rec:
        led = Ledger(SQLiteSource(store, batch=2), bus, rec)
        await led.publish(history)
        yield led
    store.close()


@pytest_asyncio.fixture(params=KINDS)
async def filled(request: pytest.FixtureRequest, bus: Bus, tmp_path: Path) -> AsyncIterator[Ledger]:
    async for led in _ledger(request.param, bus, tmp_path, _history()):
        yield led


@pytest_asyncio.fixture(params=KINDS)
async def empty(request: pytest.FixtureRequest, bus: Bus, tmp_path: Path) -> AsyncIterator[Ledger]:
    async for led in _ledger(request.param, bus, tmp_path, []):
        yield led


async def _read(source: EventSource, flt: EventFilter | None = None) -> list[Any]:
    return [ev async for ev in source.read(flt)]


async def test_events_come_in_position_order_with_their_bytes_and_stored_times(filled: Ledger) -> None:
    events = await _read(filled.source)
    assert filled.named(events) == ["a.req", "b.req", "a.ack", "b.ack", "a.resp", "b.err", "c.req"]
    assert [ev.position for ev in events] == [filled.positions[n] for n in filled.named(events)]
    assert [ev.position for ev in events] == sorted(ev.position for ev in events)
    assert all(msgspec.json.decode(ev.raw)["id"] == ev.envelope.id for ev in events)
    assert all(ev.stored_at is not None for ev in events)
    batched = [ev async for chunk in filled.source.batches() for ev in chunk]
    assert [ev.position for ev in batched] == [ev.position for ev in events]


FILTERS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "conversation": ({"conversation_ids": ("alpha-1",)}, ["a.req", "a.ack", "a.resp"]),
    "two conversations": ({"conversation_ids": ("beta-2", "gamma-3")}, ["b.req", "b.ack", "b.err", "c.req"]),
    "agent (sender or recipient)": ({"agents": ("writing",)}, ["b.req", "b.ack", "b.err"]),
    "action": ({"actions": ("ACK", "ERROR")}, ["a.ack", "b.ack", "b.err"]),
    "capability": ({"capabilities": ("research.search",)}, ["a.req", "a.ack", "a.resp", "c.req"]),
    "since and until ms": ({"since_ms": 1100, "until_ms": 2100}, ["b.req", "a.ack", "b.ack", "a.resp"]),
    "action and conversation": ({"actions": ("REQUEST",), "conversation_ids": ("gamma-3",)}, ["c.req"]),
}


@pytest.mark.parametrize("case", list(FILTERS))
async def test_filters_select_the_same_events(filled: Ledger, case: str) -> None:
    kwargs, expected = FILTERS[case]
    assert filled.named(await _read(filled.source, EventFilter(**kwargs))) == expected


async def test_after_and_until_are_positions(filled: Ledger) -> None:
    p = filled.positions
    flt = EventFilter(after=p["a.ack"], until=p["b.err"])
    assert filled.named(await _read(filled.source, flt)) == ["b.ack", "a.resp", "b.err"]
    assert await _read(filled.source, EventFilter(after=p["c.req"])) == []
    assert await _read(filled.source, EventFilter(until=0)) == []


async def test_first_and_last_position_and_count_cover_every_message(filled: Ledger) -> None:
    assert await filled.source.first_position() == filled.positions["a.req"]
    assert await filled.source.last_position() == filled.positions["stray"]
    assert await filled.source.count() == len(_history())  # the message that is not an envelope included


async def test_an_empty_ledger(empty: Ledger) -> None:
    assert (await empty.source.first_position(), await empty.source.last_position(), await empty.source.count()) \
        == (0, 0, 0)
    assert await _read(empty.source) == []
    assert await empty.source.conversation_ids() == []
    assert await empty.source.rejected() == []


async def test_a_message_that_is_not_an_envelope_is_never_an_event_and_is_listed(filled: Ledger) -> None:
    junk, stray = filled.positions["junk"], filled.positions["stray"]
    prefix = filled.bus.subjects.prefix
    listed = [(junk, f"{prefix}.writing.REQUEST.beta-2", GARBAGE), (stray, f"{prefix}.stray", GARBAGE)]
    events = await _read(filled.source)
    assert not {junk, stray} & {ev.position for ev in events}
    assert [(r.position, r.subject, r.data) for r in filled.source.rejects] == listed
    assert {r.code for r in filled.source.rejects} == {"INVALID_MESSAGE"}
    assert filled.source.damaged == []
    assert [(r.position, r.subject, r.data) for r in await filled.source.rejected()] == listed
    # A read lists those its range and subjects meet, as a read of the stream meets them.
    await _read(filled.source, EventFilter(conversation_ids=("beta-2",)))
    assert [r.position for r in filled.source.rejects] == [junk]
    await _read(filled.source, EventFilter(conversation_ids=("alpha-1",)))
    assert filled.source.rejects == []
    await _read(filled.source, EventFilter(after=junk))
    assert [r.position for r in filled.source.rejects] == [stray]


async def test_envelopes_of_one_conversation(filled: Ledger) -> None:
    envs = await filled.source.envelopes("beta-2")
    assert [filled.labels[e.id] for e in envs] == ["b.req", "b.ack", "b.err"]
    assert all(isinstance(e, Envelope) for e in envs)
    assert await filled.source.envelopes("nobody") == []


async def test_conversation_ids_in_the_order_they_began(filled: Ledger) -> None:
    assert await filled.source.conversation_ids() == ["alpha-1", "beta-2", "gamma-3"]
    assert await filled.source.conversation_ids(limit=2) == ["alpha-1", "beta-2"]
    assert await filled.source.conversations_starting("be") == ["beta-2"]
    assert await filled.source.conversations_starting("zz") == []


async def test_a_read_ends_where_the_ledger_ended_when_it_began(filled: Ledger) -> None:
    reading = filled.source.read()
    first = await reading.__anext__()
    late = _at(new_request(sender="client", recipient="research", capability="research.search", payload={},
                           conversation_id="delta-4"), 4000)
    await filled.publish([("d.req", late)])
    rest = [ev async for ev in reading]
    assert filled.named([first, *rest]) == ["a.req", "b.req", "a.ack", "b.ack", "a.resp", "b.err", "c.req"]
    assert filled.named(await _read(filled.source))[-1] == "d.req"  # the next read sees it


async def test_a_stored_event_that_no_longer_decodes_is_skipped_and_said(tmp_path: Path) -> None:
    """Only a file can be altered after the fact (the stream holds what it took): the read goes on past
    the row and names it in `damaged`."""
    import sqlite3

    store = SQLiteEventStore(tmp_path / "ledger.db")
    envs = [env for _, env in _history() if env is not None]
    store.append_envelopes(envs)
    with sqlite3.connect(tmp_path / "ledger.db") as conn:  # written around the store, as an editor would
        conn.execute("UPDATE events SET envelope = ? WHERE position = 2", (b"{broken",))
    source = SQLiteSource(store, batch=2)
    read = [ev.envelope.id async for ev in source.read()]
    assert read == [e.id for i, e in enumerate(envs, 1) if i != 2]
    assert [(d.position, d.conversation_id) for d in source.damaged] == [(2, "beta-2")]
    assert source.rejects == []
    store.close()
