"""SQLite event store (sqlite-utils): WAL, idempotent appends by envelope id, indexes for replay."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import sqlite_utils

from ledgerbus.eventstore.base import EventFilter, Rejected, StoredEvent
from ledgerbus.schemas.envelope import Envelope

_json = msgspec.json.Encoder()
_env_decoder = msgspec.json.Decoder(Envelope)

_INSERT = (
    "INSERT OR IGNORE INTO events (position, id, conversation_id, task_id, causation_id, sender, recipient,"
    " action, capability, attempt, timestamp, payload, error, envelope) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


def _row(ev: StoredEvent, encoder: msgspec.json.Encoder = _json) -> tuple[Any, ...]:
    e = ev.envelope
    raw = ev.raw or encoder.encode(e)
    return (
        ev.position,
        e.id,
        e.conversation_id,
        e.task_id,
        e.causation_id,
        e.sender,
        e.recipient,
        e.action.value,
        e.capability,
        e.attempt,
        e.timestamp,
        encoder.encode(e.payload).decode(),
        encoder.encode(e.error).decode() if e.error is not None else None,
        raw,
    )


class SQLiteEventStore:
    """The ledger's SQLite mirror. Safe to share between threads (one lock around the connection)."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly:
            if not self.path.exists():
                from ledgerbus.errors import StoreError

                raise StoreError(f"no ledger at {self.path}")
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, check_same_thread=False)
        self.db = sqlite_utils.Database(conn)
        self._lock = threading.RLock()
        if not readonly:
            self.db.conn.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a commit survives a process crash; only an OS crash can lose the last commits,
            # which the recorder then re-reads from JetStream.
            self.db.conn.execute("PRAGMA synchronous=NORMAL")
            self._create()

    def _create(self) -> None:
        db = self.db
        if "events" not in db.table_names():
            db["events"].create(
                {
                    "position": int,
                    "id": str,
                    "conversation_id": str,
                    "task_id": str,
                    "causation_id": str,
                    "sender": str,
                    "recipient": str,
                    "action": str,
                    "capability": str,
                    "attempt": int,
                    "timestamp": int,
                    "payload": str,
                    "error": str,
                    "envelope": bytes,
                },
                pk="position",
                not_null={"id", "conversation_id", "task_id", "sender", "recipient", "action", "capability",
                          "attempt", "timestamp", "payload", "envelope"},
            )
            db["events"].create_index(["id"], unique=True)
            db["events"].create_index(["conversation_id", "position"])
            db["events"].create_index(["task_id", "position"])
            db["events"].create_index(["timestamp"])
        if "rejects" not in db.table_names():
            db["rejects"].create(
                {"position": int, "subject": str, "data": bytes, "code": str, "reason": str}, pk="position"
            )
        if "meta" not in db.table_names():
            db["meta"].create({"key": str, "value": str}, pk="key")

    # -- writing ----------------------------------------------------------------------------

    def append(self, events: Sequence[StoredEvent], *, rejects: Sequence[Rejected] = (), checkpoint: int | None = None) -> int:
        """Append a batch in one transaction; returns how many envelopes were new.

        `checkpoint` (the last JetStream sequence this batch covers) is committed in the same
        transaction, so the mirror and its resume point can never disagree.
        """
        with self._lock:
            conn = self.db.conn
            before = conn.total_changes
            with conn:
                conn.executemany(_INSERT, [_row(ev) for ev in events])
                new = conn.total_changes - before
                if rejects:
                    conn.executemany(
                        "INSERT OR IGNORE INTO rejects (position, subject, data, code, reason) VALUES (?,?,?,?,?)",
                        [(r.position, r.subject, r.data, r.code, r.reason) for r in rejects],
                    )
                if checkpoint is not None:
                    conn.execute(
                        "INSERT INTO meta (key, value) VALUES ('stream_seq', ?)"
                        " ON CONFLICT(key) DO UPDATE SET value = excluded.value"
                        " WHERE CAST(excluded.value AS INTEGER) > CAST(meta.value AS INTEGER)",
                        (str(checkpoint),),
                    )
            return new

    def append_envelopes(self, envelopes: Sequence[Envelope]) -> int:
        """Append envelopes that come from no stream (imports, tests) at the next positions."""
        with self._lock:
            start = self.last_position() + 1
            return self.append([StoredEvent(start + i, e) for i, e in enumerate(envelopes)])

    def set_meta(self, key: str, value: str) -> None:
        with self._lock, self.db.conn:
            self.db.conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self.db.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    # -- reading ----------------------------------------------------------------------------

    def last_position(self) -> int:
        with self._lock:
            row = self.db.conn.execute("SELECT MAX(position) FROM events").fetchone()
        return int(row[0] or 0)

    def checkpoint(self) -> int:
        """The last JetStream sequence mirrored (envelopes, duplicates and rejects alike)."""
        value = self.get_meta("stream_seq")
        return int(value) if value else 0

    def count(self) -> int:
        with self._lock:
            return int(self.db.conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def _where(self, flt: EventFilter) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []

        def any_of(column: str, values: tuple[str, ...]) -> None:
            clauses.append(f"{column} IN ({','.join('?' * len(values))})")
            args.extend(values)

        if flt.conversation_ids:
            any_of("conversation_id", flt.conversation_ids)
        if flt.actions:
            any_of("action", flt.actions)
        if flt.capabilities:
            any_of("capability", flt.capabilities)
        if flt.agents:
            marks = ",".join("?" * len(flt.agents))
            clauses.append(f"(sender IN ({marks}) OR recipient IN ({marks}))")
            args.extend(flt.agents * 2)
        if flt.until is not None:
            clauses.append("position <= ?")
            args.append(flt.until)
        if flt.since_ms is not None:
            clauses.append("timestamp >= ?")
            args.append(flt.since_ms)
        if flt.until_ms is not None:
            clauses.append("timestamp <= ?")
            args.append(flt.until_ms)
        return (" AND ".join(clauses) or "1"), args

    def read(self, flt: EventFilter | None = None, *, batch: int = 5000) -> Iterator[StoredEvent]:
        """Stream events in position order, `batch` rows per query (keyset pagination, bounded memory)."""
        flt = flt or EventFilter()
        where, args = self._where(flt)
        after = flt.after
        decode = _env_decoder.decode
        while True:
            with self._lock:
                rows = self.db.conn.execute(
                    f"SELECT position, envelope FROM events WHERE position > ? AND {where}"
                    " ORDER BY position LIMIT ?",
                    [after, *args, batch],
                ).fetchall()
            for pos, raw in rows:
                yield StoredEvent(pos, decode(raw), raw)
            if len(rows) < batch:
                return
            after = rows[-1][0]

    def envelopes(self, conversation_id: str | None = None) -> list[Envelope]:
        flt = EventFilter(conversation_ids=(conversation_id,)) if conversation_id else None
        return [ev.envelope for ev in self.read(flt)]

    def rejects(self) -> list[Rejected]:
        with self._lock:
            rows = self.db.conn.execute(
                "SELECT position, subject, data, code, reason FROM rejects ORDER BY position"
            ).fetchall()
        return [Rejected(*r) for r in rows]

    def conversation_ids(self, *, limit: int | None = None, newest_first: bool = False) -> list[str]:
        order = "DESC" if newest_first else "ASC"
        sql = f"SELECT conversation_id FROM events GROUP BY conversation_id ORDER BY MIN(position) {order}"
        if limit:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            return [r[0] for r in self.db.conn.execute(sql).fetchall()]

    def close(self) -> None:
        with self._lock:
            self.db.conn.close()
