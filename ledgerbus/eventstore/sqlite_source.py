"""A SQLite ledger as an EventSource (base.EventSource): the store's blocking reads run on a worker
thread, never on the event loop, and a read ends where the file ended when it began, as a read of the
live stream does, so a recorder appending beside it does not make it endless."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec

from ledgerbus.eventstore.base import Damaged, EventFilter, Rejected, StoredEvent
from ledgerbus.eventstore.sqlite import SQLiteEventStore
from ledgerbus.schemas.envelope import Envelope

_MAX_FILTERS = 64  # as jetstream.subject_filters: beyond this many, the stream is read whole


def covers(subject: str, flt: EventFilter) -> bool:
    """Whether the subject filters a read of the stream uses for `flt` (jetstream.subject_filters) let a
    message on `subject` through: which of the messages that are not envelopes a read meets."""
    cids, actions = flt.conversation_ids, flt.actions
    if not cids and not actions or max(len(cids), 1) * max(len(actions), 1) > _MAX_FILTERS:
        return True
    tokens = subject.split(".")
    if len(tokens) < 4 or (actions and tokens[2] not in actions):
        return False
    return not cids or (len(tokens) == 4 and tokens[3] in cids)


def _take(rows: Iterator[StoredEvent], n: int) -> list[StoredEvent]:
    return list(itertools.islice(rows, n))


class SQLiteSource:
    """Reads a SQLiteEventStore through the EventSource contract. `trusted` (replay) skips re-validating
    what the recorder validated (SQLiteEventStore.read)."""

    def __init__(self, store: SQLiteEventStore, *, trusted: bool = False, batch: int = 5000,
                 owned: bool = False) -> None:
        self.store = store
        self.trusted = trusted
        self.batch = batch
        self.owned = owned
        self.rejects: list[Rejected] = []
        self.damaged: list[Damaged] = []

    @classmethod
    def open(cls, path: str | Path, *, trusted: bool = False) -> "SQLiteSource":
        """The ledger file at `path`, read-only (StoreError when missing or not a ledger); closed with the source."""
        return cls(SQLiteEventStore(path, readonly=True), trusted=trusted, owned=True)

    @property
    def path(self) -> Path:
        return self.store.path

    async def last_position(self) -> int:
        return (await asyncio.to_thread(self.store.held))[1]

    async def first_position(self) -> int:
        return (await asyncio.to_thread(self.store.held))[0]

    async def count(self) -> int:
        return (await asyncio.to_thread(self.store.held))[2]

    async def batches(self, flt: EventFilter | None = None) -> AsyncIterator[list[StoredEvent]]:
        flt = flt or EventFilter()
        self.rejects, self.damaged = [], []
        end = await self.last_position()
        if flt.until is not None:
            end = min(end, flt.until)
        if end <= flt.after:
            return
        bounded = msgspec.structs.replace(flt, until=end)
        rows = self.store.read(bounded, batch=self.batch, trusted=self.trusted, damaged=self.damaged)
        try:
            while chunk := await asyncio.to_thread(_take, rows, self.batch):
                yield chunk
                if len(chunk) < self.batch:
                    break
        finally:
            rows.close()
        self.rejects = [r for r in await asyncio.to_thread(self.store.rejects)
                        if flt.after < r.position <= end and covers(r.subject, flt)]

    async def read(self, flt: EventFilter | None = None) -> AsyncIterator[StoredEvent]:
        async for chunk in self.batches(flt):
            for ev in chunk:
                yield ev

    async def envelopes(self, conversation_id: str) -> list[Envelope]:
        return [ev.envelope async for ev in self.read(EventFilter(conversation_ids=(conversation_id,)))]

    async def rejected(self) -> list[Rejected]:
        return await asyncio.to_thread(self.store.rejects)

    async def conversation_ids(self, *, limit: int | None = None) -> list[str]:
        return await asyncio.to_thread(lambda: self.store.conversation_ids(limit=limit))

    async def conversations_starting(self, prefix: str, *, limit: int = 10) -> list[str]:
        return await asyncio.to_thread(lambda: self.store.conversations_starting(prefix, limit=limit))

    async def close(self) -> None:
        if self.owned:
            self.store.close()
