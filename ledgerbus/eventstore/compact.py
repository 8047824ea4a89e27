"""`ledgerbus compact`: replace finished conversations' events by a snapshot of their folded state.

What stays verifiable: every removed event keeps its chain link (position, id, prev_hash, hash) in
the `compacted` table, so the chain of a compacted conversation still checks end to end, and the
snapshot is bound to the chain's last hash (`snapshot_hash`), so editing the snapshot is caught too.
What is given up: the envelopes' bytes, so timelines, time travel and export of those conversations
end at the snapshot. Running conversations are never compacted.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from ledgerbus.eventstore.base import Damaged, EventFilter
from ledgerbus.eventstore.fold import ConversationState, ConversationStatus, fold
from ledgerbus.eventstore.integrity import snapshot_hash
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
    conn = store.db.conn
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
        last = events[-1].position
        body = _encode(state)
        with store._lock:
            # IMMEDIATE: from the head check to the DELETE no other writer (the recorder, on its own
            # connection) can extend this conversation, so nothing is removed that the snapshot lacks.
            conn.execute("BEGIN IMMEDIATE")
            try:
                if not _compact_locked(conn, cid, state, body, events[0].position, last, len(events)):
                    conn.rollback()
                    continue
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
        report.conversations += 1
        report.events += len(events)
    if vacuum:
        with store._lock:
            conn.execute("VACUUM")
            # In WAL mode VACUUM writes the smaller copy into the WAL; only a checkpoint that truncates
            # the WAL gives the space back (a reader beside it can hold that off: then less is freed,
            # and the report says so, because it measures the disk).
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    report.bytes_after = disk_bytes(store.path)
    return report


def _compact_locked(conn: sqlite3.Connection, cid: str, state: ConversationState, body: bytes, first: int,
                    last: int, count: int) -> bool:
    """Snapshot and remove one conversation folded up to position `last`, inside the caller's write
    transaction; False (nothing written) when its chain no longer ends at `last`."""
    row = conn.execute("SELECT hash, last_position FROM chain_heads WHERE conversation_id = ?", (cid,)).fetchone()
    if row is None or row[1] != last:
        # Appended to since it was read (it is compacted whole on a later run), or events written
        # around the store: leave them for `verify` to report.
        return False
    head_hash = row[0]
    conn.execute(
        "INSERT INTO snapshots (conversation_id, status, events, first_position, last_position, head_hash,"
        " state, hash) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(conversation_id) DO UPDATE SET"
        " status = excluded.status, events = snapshots.events + excluded.events,"
        " last_position = excluded.last_position, head_hash = excluded.head_hash,"
        " state = excluded.state, hash = excluded.hash",
        (cid, state.status.value, count, first, last, head_hash, body, snapshot_hash(head_hash, body)))
    # Bounded by the fold: a row past it (written around the store) keeps its bytes for `verify` to report.
    conn.execute("INSERT OR IGNORE INTO compacted (position, conversation_id, id, prev_hash, hash)"
                 " SELECT position, conversation_id, id, prev_hash, hash FROM events"
                 " WHERE conversation_id = ? AND position <= ?", (cid, last))
    conn.execute("DELETE FROM events WHERE conversation_id = ? AND position <= ?", (cid, last))
    return True


def snapshot(store: SQLiteEventStore, conversation_id: str) -> ConversationState | None:
    """A compacted conversation's state as it was snapshotted, or None."""
    row = store.db.conn.execute("SELECT state FROM snapshots WHERE conversation_id = ?", (conversation_id,)).fetchone()
    return msgspec.json.decode(row[0], type=ConversationState) if row else None


def restore_link(store: SQLiteEventStore, position: int, conversation_id: str, event_id: str, prev_hash: str,
                 digest: str) -> None:
    """Put back one compacted event's chain link (an import of a compacted ledger), extending its chain."""
    with store._lock, store.db.conn as conn:
        inserted = conn.execute(
            "INSERT OR IGNORE INTO compacted (position, conversation_id, id, prev_hash, hash) VALUES (?,?,?,?,?)",
            (position, conversation_id, event_id, prev_hash, digest)).rowcount
        if not inserted:
            return  # held already (the same export imported again): the chain's end is where it was
        conn.execute("INSERT INTO chain_heads (conversation_id, hash, count, last_position) VALUES (?,?,1,?)"
                     " ON CONFLICT(conversation_id) DO UPDATE SET hash = excluded.hash, count = chain_heads.count + 1,"
                     " last_position = excluded.last_position WHERE excluded.last_position > chain_heads.last_position",
                     (conversation_id, digest, position))


def restore_snapshot(store: SQLiteEventStore, conversation_id: str, status: str, events: int, first_position: int,
                     last_position: int, head_hash: str, state: bytes, digest: str) -> None:
    with store._lock, store.db.conn as conn:
        conn.execute("INSERT OR REPLACE INTO snapshots (conversation_id, status, events, first_position, last_position,"
                     " head_hash, state, hash) VALUES (?,?,?,?,?,?,?,?)",
                     (conversation_id, status, events, first_position, last_position, head_hash, state, digest))
