"""Reading the live JetStream LEDGER directly: an ephemeral pull consumer, streamed in batches.

The one reader of the stream for everything that reads it to an end (replay, export, recovery, the CLI's
views); the recorder alone follows it for good, with a durable consumer of its own. Nothing is
acknowledged and nothing is published: the consumer has AckPolicy NONE, starts at the first position
wanted, stops at the stream's last sequence as of the start of the read (a moving ledger does not make a
replay endless), and is deleted when the read ends. Subject filters narrow what the server sends (a
conversation, an action); the rest of an EventFilter is applied here, so the result is exactly what the
SQLite store returns for the same filter (the contract both implement: base.EventSource).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

from ledgerbus.bus.connection import Bus
from ledgerbus.bus.messages import StreamInfo, pending_after, stored_ms, stream_sequence
from ledgerbus.bus.streams import ConsumerSpec
from ledgerbus.errors import BusTimeout, InvalidMessage, NotFound, StoreError
from ledgerbus.eventstore.base import Damaged, EventFilter, Rejected, StoredEvent
from ledgerbus.schemas.envelope import Envelope

log = logging.getLogger("ledgerbus.eventstore.jetstream")

_MAX_FILTERS = 64  # beyond this many subject filters, filter here instead (the server caps them too)


def subject_filters(prefix: str, flt: EventFilter) -> list[str]:
    """The narrowest subject filters `lb.<recipient>.<action>.<conversation>` that cover `flt`.

    No conversation or action asked for: the whole namespace, as the recorder mirrors it, so a message on
    a subject no envelope has is seen (and rejected) by both."""
    if not flt.conversation_ids and not flt.actions:
        return [f"{prefix}.>"]
    cids = list(flt.conversation_ids) or ["*"]
    actions = list(flt.actions) or ["*"]
    subjects = [f"{prefix}.*.{a}.{c}" for a, c in itertools.product(actions, cids)]
    subjects = [s[:-2] + ".>" if s.endswith(".*") else s for s in subjects]
    if len(subjects) > _MAX_FILTERS:
        return [f"{prefix}.>"]
    return subjects


def matches(ev: StoredEvent, flt: EventFilter) -> bool:
    e = ev.envelope
    if flt.conversation_ids and e.conversation_id not in flt.conversation_ids:
        return False
    if flt.actions and e.action.value not in flt.actions:
        return False
    if flt.capabilities and e.capability not in flt.capabilities:
        return False
    if flt.agents and e.sender not in flt.agents and e.recipient not in flt.agents:
        return False
    if flt.since_ms is not None and e.timestamp < flt.since_ms:
        return False
    if flt.until_ms is not None and e.timestamp > flt.until_ms:
        return False
    return flt.until is None or ev.position <= flt.until


class JetStreamLedger:
    """The LEDGER stream as a read-only event source (base.EventSource)."""

    def __init__(self, bus: Bus, *, fetch_timeout: float = 1.0, batch: int = 1000) -> None:
        self.bus = bus
        self.fetch_timeout = fetch_timeout
        self.batch = batch
        self.rejects: list[Rejected] = []  # messages that are not envelopes, seen during the last read
        self.damaged: list[Damaged] = []  # always empty: what the stream cannot decode is a reject

    async def _state(self, subjects_filter: str | None = None) -> StreamInfo:
        try:
            return await self.bus.stream_info(subjects_filter=subjects_filter)
        except NotFound:
            raise StoreError(f"no ledger stream {self.bus.subjects.stream} on {self.bus.url}") from None

    async def last_position(self) -> int:
        return int((await self._state()).last_seq or 0)

    async def first_position(self) -> int:
        state = await self._state()
        return int(state.first_seq or 0) if state.messages else 0

    async def count(self) -> int:
        return int((await self._state()).messages or 0)

    async def batches(self, flt: EventFilter | None = None, *, batch: int | None = None,
                      subjects: Sequence[str] = ()) -> AsyncGenerator[list[StoredEvent], None]:
        """Events in position order, `batch` at a time (memory stays bounded by the batch).

        `subjects`: the subject filters to read instead of those `flt` implies (a caller that has a subject).
        """
        flt = flt or EventFilter()
        self.rejects = []
        end = await self.last_position()
        if flt.until is not None:
            end = min(end, flt.until)
        start = flt.after + 1
        if end < start:
            return
        filters = list(subjects) or subject_filters(self.bus.subjects.prefix, flt)
        decode = self.bus.codec.decode
        fetched = self._fetched(start, filters, batch or self.batch)
        async with contextlib.aclosing(fetched):  # the consumer goes when the read ends, not when collected
            async for msgs in fetched:
                out: list[StoredEvent] = []
                done = False
                for msg in msgs:
                    seq = stream_sequence(msg)
                    if seq > end:
                        done = True
                        break
                    try:
                        ev = StoredEvent(seq, decode(msg.data), msg.data, stored_ms(msg))
                    except InvalidMessage as exc:
                        self.rejects.append(Rejected(seq, msg.subject, msg.data, exc.code, exc.reason))
                        continue
                    if matches(ev, flt):
                        out.append(ev)
                if out:
                    yield out
                if done or (msgs and stream_sequence(msgs[-1]) >= end):
                    return

    async def _fetched(self, start: int, filters: list[str], batch: int) -> AsyncGenerator[list[Any], None]:
        """The stream's messages on `filters` from sequence `start`, a fetch at a time, until the consumer
        has none pending. Every call to the bus of a read is here."""
        config = ConsumerSpec(
            start_seq=start,
            ack="none",
            inactive_threshold=60.0,  # the server cleans up after a reader that died
            mem_storage=True,
            max_ack_pending=-1,
            filter_subjects=tuple(filters),
        )
        sub = await self.bus.pull(config)
        try:
            while True:
                try:
                    msgs = await sub.fetch(batch, timeout=self.fetch_timeout)
                except BusTimeout:
                    info = await sub.info()
                    if not info.num_pending:
                        return
                    continue
                yield msgs
                if msgs and not pending_after(msgs[-1]):
                    return
        finally:
            await sub.close(delete=True)  # inactive_threshold removes it anyway if this cannot

    async def read(self, flt: EventFilter | None = None, *, batch: int | None = None,
                   subjects: Sequence[str] = ()) -> AsyncIterator[StoredEvent]:
        async for chunk in self.batches(flt, batch=batch, subjects=subjects):
            for ev in chunk:
                yield ev

    async def envelopes(self, conversation_id: str) -> list[Envelope]:
        return [ev.envelope async for ev in self.read(EventFilter(conversation_ids=(conversation_id,)))]

    async def rejected(self) -> list[Rejected]:
        async for _ in self.batches():
            pass
        return list(self.rejects)

    async def conversation_ids(self, *, limit: int | None = None) -> list[str]:
        # One pass, that ends once `limit` are found; memory grows with the conversations, not the events.
        seen: dict[str, None] = {}
        async with contextlib.aclosing(self.batches()) as chunks:
            async for chunk in chunks:
                for ev in chunk:
                    seen.setdefault(ev.envelope.conversation_id, None)
                if limit is not None and len(seen) >= limit:
                    break
        return list(seen)[:limit]

    async def conversations_starting(self, prefix: str, *, limit: int = 10) -> list[str]:
        """From the subjects of the stream's REQUESTs (every conversation begins with one), as the stream
        counts them: no message is read."""
        state = await self._state(f"{self.bus.subjects.prefix}.*.REQUEST.*")
        found = {s.rsplit(".", 1)[1] for s in state.subjects}
        return sorted(c for c in found if c.startswith(prefix))[:limit]

    async def close(self) -> None:
        """The bus is the caller's: nothing of its own to release."""
