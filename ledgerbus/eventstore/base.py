"""The EventStore interface: an append-only, position-ordered log of envelopes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Protocol, runtime_checkable

import msgspec

from ledgerbus.schemas.envelope import Envelope


class StoredEvent(msgspec.Struct, frozen=True, gc=False):  # untracked, as Envelope (schemas/envelope.py)
    """An envelope with its place in the ledger. `position` is the global order of truth."""

    position: int
    envelope: Envelope
    raw: bytes = b""  # the exact wire bytes, kept so export is lossless and hashes are stable
    # When JetStream stored it (unix ms, the stream message's timestamp): the observer's time, which the
    # fold's windows run on. None where nobody recorded it (imports, mirrors older than this field).
    stored_at: int | None = None


class Rejected(msgspec.Struct, frozen=True):
    """A ledger message that was not a valid envelope: kept, never dropped, with the reason."""

    position: int
    subject: str
    data: bytes
    code: str
    reason: str


class Damaged(msgspec.Struct, frozen=True):
    """A stored event whose envelope no longer decodes: readers skip it and say so, `verify` says why."""

    position: int
    conversation_id: str
    reason: str

    def describe(self) -> str:
        return (f"position {self.position} (conversation {self.conversation_id}): the stored envelope does not "
                f"decode ({self.reason}); skipped — `ledgerbus verify` tells whether the file was altered")


class EventFilter(msgspec.Struct, kw_only=True, frozen=True):
    conversation_ids: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()  # sender or recipient
    actions: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()
    after: int = 0  # positions strictly greater than this
    until: int | None = None  # positions up to and including this
    since_ms: int | None = None
    until_ms: int | None = None


@runtime_checkable
class EventStore(Protocol):
    """What the fold, replay and the CLI need from a ledger, whatever holds it."""

    def append(self, events: Sequence[StoredEvent]) -> int:
        """Store events; an envelope id already present is skipped. Returns how many were new."""
        ...

    def read(self, flt: EventFilter | None = None, *, batch: int = 5000) -> Iterator[StoredEvent]:
        """Events in position order, streamed in batches (memory stays bounded)."""
        ...

    def last_position(self) -> int: ...


@runtime_checkable
class EventSource(Protocol):
    """A ledger to read, whatever holds it: the live JetStream LEDGER (`JetStreamLedger`) or a recorded
    SQLite file (`SQLiteSource`). One contract (tests/eventstore/test_source_contract.py runs it against
    both), so the fold, replay and every CLI command read either through it.

    Positions are the stream's sequences: every message the ledger took has one, an envelope or not.
    A message that is not an envelope is never read as an event; a read lists those of its range in
    `rejects`, and a stored event that no longer decodes (a SQLite file altered) in `damaged`.
    """

    rejects: list[Rejected]  # non-envelopes in the range the last read covered
    damaged: list[Damaged]  # stored events the last read skipped because they no longer decode

    def read(self, flt: EventFilter | None = None) -> AsyncIterator[StoredEvent]:
        """Events matching `flt` in position order, up to the last position held when the read began."""
        ...

    def batches(self, flt: EventFilter | None = None) -> AsyncIterator[list[StoredEvent]]:
        """The same events as `read`, a batch at a time (memory stays bounded by the batch)."""
        ...

    async def last_position(self) -> int:
        """The position of the newest message held (0 for an empty ledger)."""
        ...

    async def first_position(self) -> int:
        """The position of the oldest message held (0 for an empty ledger)."""
        ...

    async def count(self) -> int:
        """How many messages the ledger holds: envelopes and the messages that are not."""
        ...

    async def envelopes(self, conversation_id: str) -> list[Envelope]:
        """One conversation's envelopes, in position order."""
        ...

    async def rejected(self) -> list[Rejected]:
        """Every message held that is not an envelope, in position order."""
        ...

    async def conversation_ids(self, *, limit: int | None = None) -> list[str]:
        """Every conversation with an event (the first `limit` of them), in the order each began."""
        ...

    async def conversations_starting(self, prefix: str, *, limit: int = 10) -> list[str]:
        """Conversation ids that start with `prefix` (sorted, at most `limit`)."""
        ...

    async def close(self) -> None: ...
