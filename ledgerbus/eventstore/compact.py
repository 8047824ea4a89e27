"""`ledgerbus compact`: replace finished conversations' events by a snapshot of their folded state.

What stays verifiable: every removed event keeps its chain link (position, id, prev_hash, hash) in
the `compacted` table, so the chain of a compacted conversation still checks end to end, and the
snapshot is bound to the chain's last hash (`snapshot_hash`), so editing the snapshot is caught too.
What is given up: the envelopes' bytes, so timelines, time travel and export of those conversations
end at the snapshot. Running conversations are never compacted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from ledgerbus.eventstore.base import Damaged, EventFilter
from ledgerbus.eventstore.fold import ConversationState, ConversationStatus, fold
from ledgerbus.eventstore.sqlite import SQLiteEventStore

_encode = msgspec.json.Encoder(order="deterministic").encode


@dataclass
class CompactReport:
    conversations: int = 0
    events: int = 0
    skipped_running: int = 0
    bytes_before: int = 0  # the file and its WAL, as on disk
    bytes_after: int = 0
    damaged: list[Damaged] = field(default_factory=list)  # events that do not decode (their conversations are kept)
    kept_damaged: list[str] = field(default_factory=list)  # conversations not compacted because of them

    @property
    def bytes_freed(self) -> int:
        return self.bytes_before - self.bytes_after


def disk_bytes(path: Path) -> int:
    """What a ledger takes on disk: the database file and its write-ahead log (the WAL can hold most of it)."""
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())


def compact(store: SQLiteEventStore, *, ended_before_ms: int | None = None,
            conversation_ids: tuple[str, ...] = (), vacuum: bool = False) -> CompactReport:
    """Snapshot and remove the events of finished conversations (that ended before `ended_before_ms`)."""
    report = CompactReport(bytes_before=disk_bytes(store.path))
    ids = list(conversation_ids) or store.conversation_ids()
    for cid in ids:
        damaged: list[Damaged] = []
        events = list(store.read(EventFilter(conversation_ids=(cid,)), damaged=damaged))
        if damaged:
            # A snapshot folded without them would hide them for good: the conversation stays as it is.
            report.damaged += damaged
            report.kept_damaged.append(cid)
            continue
        if not events:
            continue
        state = fold(events)
        if state.status is ConversationStatus.RUNNING:
            report.skipped_running += 1
            continue
        if ended_before_ms is not None and (state.ended_at or 0) >= ended_before_ms:
            continue
        if not store.compact_conversation(cid, state.status.value, _encode(state), events[0].position,
                                          events[-1].position, len(events)):
            continue
        report.conversations += 1
        report.events += len(events)
    if vacuum:
        # A reader beside it can hold off giving the space back: then less is freed, and the report
        # says so, because it measures the disk.
        store.vacuum()
    report.bytes_after = disk_bytes(store.path)
    return report


def snapshot(store: SQLiteEventStore, conversation_id: str) -> ConversationState | None:
    """A compacted conversation's state as it was snapshotted, or None."""
    state = store.snapshot_state(conversation_id)
    return msgspec.json.decode(state, type=ConversationState) if state is not None else None
