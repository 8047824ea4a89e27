"""`ledgerbus compact`: replace finished conversations' events by a snapshot of their folded state.

What stays verifiable: every removed event keeps its chain link (position, id, prev_hash, hash) in
the `compacted` table, so the chain of a compacted conversation still checks end to end, and the
snapshot is bound to the chain's last hash (`snapshot_hash`), so editing the snapshot is caught too.
What is given up: the envelopes' bytes, so timelines, time travel and export of those conversations
end at the snapshot. Running conversations are never compacted.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from ledgerbus.eventstore.base import EventFilter
from ledgerbus.eventstore.fold import ConversationState, ConversationStatus, fold
from ledgerbus.eventstore.integrity import snapshot_hash
from ledgerbus.eventstore.sqlite import SQLiteEventStore

_encode = msgspec.json.Encoder(order="deterministic").encode


@dataclass
class CompactReport:
    conversations: int = 0
    events: int = 0
    skipped_running: int = 0
    bytes_before: int = 0
    bytes_after: int = 0


def compact(store: SQLiteEventStore, *, ended_before_ms: int | None = None,
            conversation_ids: tuple[str, ...] = (), vacuum: bool = False) -> CompactReport:
    """Snapshot and remove the events of finished conversations (that ended before `ended_before_ms`)."""
    report = CompactReport(bytes_before=store.path.stat().st_size if store.path.exists() else 0)
    conn = store.db.conn
    ids = list(conversation_ids) or store.conversation_ids()
    heads = store.heads()
    for cid in ids:
        events = list(store.read(EventFilter(conversation_ids=(cid,))))
        if not events:
            continue
        state = fold(events)
        if state.status is ConversationStatus.RUNNING:
            report.skipped_running += 1
            continue
        if ended_before_ms is not None and (state.ended_at or 0) >= ended_before_ms:
            continue
        head = heads.get(cid)
        if head is None or head.last_position != events[-1].position:
            continue  # events written around the store: leave them for `verify` to report
        body = _encode(state)
        with store._lock, conn:
            conn.execute(
                "INSERT INTO snapshots (conversation_id, status, events, first_position, last_position, head_hash,"
                " state, hash) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(conversation_id) DO UPDATE SET"
                " status = excluded.status, events = snapshots.events + excluded.events,"
                " last_position = excluded.last_position, head_hash = excluded.head_hash,"
                " state = excluded.state, hash = excluded.hash",
                (cid, state.status.value, len(events), events[0].position, events[-1].position, head.hash,
                 body, snapshot_hash(head.hash, body)))
            conn.execute("INSERT OR IGNORE INTO compacted (position, conversation_id, id, prev_hash, hash)"
                         " SELECT position, conversation_id, id, prev_hash, hash FROM events WHERE conversation_id = ?",
                         (cid,))
            conn.execute("DELETE FROM events WHERE conversation_id = ?", (cid,))
        report.conversations += 1
        report.events += len(events)
    if vacuum:
        with store._lock:
            conn.execute("VACUUM")
    report.bytes_after = store.path.stat().st_size
    return report


def snapshot(store: SQLiteEventStore, conversation_id: str) -> ConversationState | None:
    """A compacted conversation's state as it was snapshotted, or None."""
    row = store.db.conn.execute("SELECT state FROM snapshots WHERE conversation_id = ?", (conversation_id,)).fetchone()
    return msgspec.json.decode(row[0], type=ConversationState) if row else None


def restore_link(store: SQLiteEventStore, position: int, conversation_id: str, event_id: str, prev_hash: str,
                 digest: str) -> None:
    """Put back one compacted event's chain link (an import of a compacted ledger), extending its chain."""
    with store._lock, store.db.conn as conn:
        conn.execute("INSERT OR IGNORE INTO compacted (position, conversation_id, id, prev_hash, hash) VALUES (?,?,?,?,?)",
                     (position, conversation_id, event_id, prev_hash, digest))
        conn.execute("INSERT INTO chain_heads (conversation_id, hash, count, last_position) VALUES (?,?,1,?)"
                     " ON CONFLICT(conversation_id) DO UPDATE SET hash = excluded.hash, count = chain_heads.count + 1,"
                     " last_position = excluded.last_position", (conversation_id, digest, position))


def restore_snapshot(store: SQLiteEventStore, conversation_id: str, status: str, events: int, first_position: int,
                     last_position: int, head_hash: str, state: bytes, digest: str) -> None:
    with store._lock, store.db.conn as conn:
        conn.execute("INSERT OR REPLACE INTO snapshots (conversation_id, status, events, first_position, last_position,"
                     " head_hash, state, hash) VALUES (?,?,?,?,?,?,?,?)",
                     (conversation_id, status, events, first_position, last_position, head_hash, state, digest))
