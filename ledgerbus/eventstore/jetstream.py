"""Reading the live JetStream LEDGER directly: an ephemeral pull consumer, streamed in batches.

Nothing is acknowledged and nothing is published: the consumer has AckPolicy NONE, starts at the
first position wanted, stops at the stream's last sequence as of the start of the read (a moving
ledger does not make a replay endless), and is deleted when the read ends. Subject filters narrow
what the server sends (a conversation, an action, a recipient); the rest of an EventFilter is
applied here, so the result is exactly what the SQLite store returns for the same filter.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator

from ledgerbus.bus.connection import Bus
from ledgerbus.bus.messages import pending_after, stored_ms, stream_sequence
from ledgerbus.bus.streams import ConsumerSpec
from ledgerbus.errors import BusTimeout, InvalidMessage, NotFound, StoreError
from ledgerbus.eventstore.base import EventFilter, Rejected, StoredEvent

log = logging.getLogger("ledgerbus.eventstore.jetstream")

_MAX_FILTERS = 64  # beyond this many subject filters, filter here instead (the server caps them too)


def subject_filters(prefix: str, flt: EventFilter) -> list[str]:
    """The narrowest subject filters `lb.<recipient>.<action>.<conversation>` that cover `flt`."""
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
    """The LEDGER stream as a read-only event source."""

    def __init__(self, bus: Bus, *, fetch_timeout: float = 1.0) -> None:
        self.bus = bus
        self.fetch_timeout = fetch_timeout
        self.rejects: list[Rejected] = []  # messages that are not envelopes, seen during the last read

    async def last_position(self) -> int:
        info = await self.bus.stream_info()
        return info.last_seq

    async def first_position(self) -> int:
        info = await self.bus.stream_info()
        return info.first_seq

    async def count(self) -> int:
        info = await self.bus.stream_info()
        return info.messages

    async def batches(self, flt: EventFilter | None = None, *, batch: int = 1000) -> AsyncIterator[list[StoredEvent]]:
        """Events in position order, `batch` at a time (memory stays bounded by the batch)."""
        flt = flt or EventFilter()
        stream = self.bus.subjects.stream
        try:
            end = await self.last_position()
        except NotFound:
            raise StoreError(f"no ledger stream {stream} on {self.bus.url}") from None
        if flt.until is not None:
            end = min(end, flt.until)
        start = flt.after + 1
        if end < start:
            return
        filters = subject_filters(self.bus.subjects.prefix, flt)
        config = ConsumerSpec(
            start_seq=start,
            ack="none",
            inactive_threshold=60.0,  # the server cleans up after a reader that died
            mem_storage=True,
            max_ack_pending=-1,
            filter_subjects=tuple(filters),
        )
        sub = await self.bus.pull(config)
        decode = self.bus.codec.decode
        self.rejects = []
        try:
            done = False
            while not done:
                try:
                    msgs = await sub.fetch(batch, timeout=self.fetch_timeout)
                except BusTimeout:
                    info = await sub.info()
                    if not info.num_pending:
                        return
                    continue
                out: list[StoredEvent] = []
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
                    if seq >= end:
                        done = True
                if msgs and not done and not pending_after(msgs[-1]):
                    done = True
                if out:
                    yield out
        finally:
            await sub.close(delete=True)  # inactive_threshold removes it anyway if this cannot

    async def read(self, flt: EventFilter | None = None, *, batch: int = 1000) -> AsyncIterator[StoredEvent]:
        async for chunk in self.batches(flt, batch=batch):
            for ev in chunk:
                yield ev

    async def envelopes(self, conversation_id: str) -> list[StoredEvent]:
        return [ev async for ev in self.read(EventFilter(conversation_ids=(conversation_id,)))]
