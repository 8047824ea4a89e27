"""SQLite event store (sqlite-utils): WAL, idempotent appends by envelope id, indexes for replay.

Every event carries its link in its conversation's hash chain (`hash`, `prev_hash`, see integrity.py),
computed here as it is appended, in the same transaction; `chain_heads` holds each chain's end.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import sqlite3
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from operator import attrgetter
from pathlib import Path
from typing import Any

import msgspec
import sqlite_utils

from ledgerbus.errors import InvalidMessage, StoreConflict, StoreError, StoreUnavailable
from ledgerbus.eventstore.base import Damaged, EventFilter, Rejected, StoredEvent
from ledgerbus.eventstore.sqlite_checkpoint import Checkpointer
from ledgerbus.eventstore.sqlite_schema import ensure_schema, has_stored_at, legacy_columns
from ledgerbus.eventstore.sqlite_verify import coverage_issues, event_columns, row_issues, table_names, unchained_issues
from ledgerbus.eventstore.integrity import (GENESIS, ChainRow, Head, Issue, IssueKind, VerifyReport, chain_hash,
                                           snapshot_hash, verify_stream)
from ledgerbus.schemas.codec import Codec
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import Envelope, StoredEnvelope

_json = msgspec.json.Encoder()
_trusted_decoder = msgspec.json.Decoder(StoredEnvelope)
# The codec's rules (a repeated key included) without its size limits: a reader is not the door, and a
# deployment may have let bigger envelopes in. Tools read with it; replay trusts what the recorder checked.
_stored_codec = Codec(max_bytes=1 << 62, max_depth=1 << 30)

_COLUMNS = ("position", "id", "conversation_id", "sender", "recipient", "action", "capability", "timestamp",
            "envelope", "prev_hash", "hash", "stored_at")


@functools.cache
def _insert(*, or_ignore: bool, legacy: tuple[str, ...]) -> str:
    """OR IGNORE once the batch's stored ids were looked up and left out; a plain INSERT for a batch
    presumed fresh, so that an id stored before raises. `legacy`: the columns an older ledger stores
    beside the envelope (they go on being written)."""
    columns = _COLUMNS + legacy
    return (f"INSERT {'OR IGNORE ' if or_ignore else ''}INTO events ({', '.join(columns)})"
            f" VALUES ({','.join('?' * len(columns))})")
_UPSERT_HEAD = (
    "INSERT INTO chain_heads (conversation_id, hash, count, last_position) VALUES (?,?,?,?)"
    " ON CONFLICT(conversation_id) DO UPDATE SET hash = excluded.hash, count = excluded.count,"
    " last_position = excluded.last_position"
)
_MAX_VARS = 450  # rows per IN (...) lookup: two lists of them stay under every build's 999 host parameters


_ACTION = {a: a.value for a in Action}
_NO_END = (GENESIS, 0, 0)


class _NotFresh(Exception):
    """A batch presumed fresh repeats an event within itself: it is redone with the lookup."""


def _store_error(exc: Exception, path: Path) -> StoreError:
    """The StoreError for what sqlite3 raised writing the ledger at `path` (each is also the sqlite3 error)."""
    if isinstance(exc, sqlite3.OperationalError):  # locked, read-only, disk full, I/O
        return StoreUnavailable(f"cannot write the ledger {path}: {exc}")
    if isinstance(exc, sqlite3.IntegrityError):
        return StoreConflict(f"the ledger {path} refused the batch: {exc}")
    return StoreError(f"cannot write the ledger {path}: {exc}")


def _by_position(ev: StoredEvent) -> int:
    return ev.position


def _stored(conn: sqlite3.Connection, column: str, values: Sequence[Any],
            tables: tuple[str, ...] = ("events", "compacted")) -> set[Any]:
    """Which of `values` the ledger holds in `column` ("id" or "position"), compacted rows included."""
    found: set[Any] = set()
    for i in range(0, len(values), _MAX_VARS):
        chunk = list(values[i:i + _MAX_VARS])
        marks = ",".join("?" * len(chunk))
        found.update(r[0] for r in conn.execute(
            " UNION ALL ".join(f"SELECT {column} FROM {t} WHERE {column} IN ({marks})" for t in tables),
            chunk * len(tables)))
    return found


def _positions_of(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, int]:
    """Where the ledger holds each of these envelope ids (compacted rows included)."""
    found: dict[str, int] = {}
    for i in range(0, len(ids), _MAX_VARS):
        chunk = list(ids[i:i + _MAX_VARS])
        marks = ",".join("?" * len(chunk))
        found.update(conn.execute(f"SELECT id, position FROM events WHERE id IN ({marks}) UNION ALL"
                                  f" SELECT id, position FROM compacted WHERE id IN ({marks})", chunk * 2).fetchall())
    return found


def _encoded(value: Any) -> str | None:
    return _json.encode(value).decode() if value is not None else None


_LEGACY_VALUE: dict[str, Callable[[Envelope], Any]] = {
    "task_id": attrgetter("task_id"), "causation_id": attrgetter("causation_id"), "attempt": attrgetter("attempt"),
    "payload": lambda e: _encoded(e.payload), "error": lambda e: _encoded(e.error),
}


def _refuse_a_foreign_database(conn: sqlite3.Connection, path: Path, *, readonly: bool) -> None:
    """A ledger, or (to write) an empty database: never another application's file, which opening it
    writable would fill with the ledger's tables."""
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "events" in tables:
        return
    if tables:
        shown = ", ".join(sorted(tables)[:5]) + (", …" if len(tables) > 5 else "")
        raise StoreError(f"{path} is a SQLite database but not a ledger (tables: {shown}); "
                         "ledgerbus leaves it as it is")
    if readonly:
        raise StoreError(f"{path} holds no ledger yet (an empty database)")


def _compact_locked(conn: sqlite3.Connection, cid: str, status: str, body: bytes, first: int, last: int,
                    count: int) -> bool:
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
        (cid, status, count, first, last, head_hash, body, snapshot_hash(head_hash, body)))
    # Bounded by the fold: a row past it (written around the store) keeps its bytes for `verify` to report.
    conn.execute("INSERT OR IGNORE INTO compacted (position, conversation_id, id, prev_hash, hash)"
                 " SELECT position, conversation_id, id, prev_hash, hash FROM events"
                 " WHERE conversation_id = ? AND position <= ?", (cid, last))
    conn.execute("DELETE FROM events WHERE conversation_id = ? AND position <= ?", (cid, last))
    return True


class SQLiteEventStore:
    """The ledger's SQLite mirror. Safe to share between threads (one lock around the connection)."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a directory, not a ledger file")
        try:
            if readonly:
                if not self.path.exists():
                    raise StoreError(f"no ledger at {self.path}")
                conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:  # an unreadable file, a parent that is a file, ...
            raise StoreError(f"cannot open the ledger {self.path}: {exc}") from None
        try:
            _refuse_a_foreign_database(conn, self.path, readonly=readonly)
        except sqlite3.DatabaseError as exc:  # "file is not a database", and its kin
            conn.close()
            raise StoreError(f"{self.path} is not a ledger: {exc}") from None
        except BaseException:
            conn.close()
            raise
        self.db = sqlite_utils.Database(conn)
        self._lock = threading.RLock()
        self._checkpointer: Checkpointer | None = None
        if not readonly:
            # Rows are about 1 KB (the envelope plus its query columns): 16 KB pages split and checkpoint
            # less than the 4 KB default (appends about 12% cheaper). Takes effect on a new file only.
            self.db.conn.execute("PRAGMA page_size=16384")
            self.db.conn.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a commit survives a process crash; only an OS crash can lose the last commits,
            # which the recorder then re-reads from JetStream.
            self.db.conn.execute("PRAGMA synchronous=NORMAL")
            if ensure_schema(self.db):
                self.rechain()
            self._checkpointer = Checkpointer(self.path)
        self._legacy = legacy_columns(self.db)
        # A read-only ledger from before stored times: its events read with none (NULL).
        self._stored_at = "stored_at" if has_stored_at(self.db) else "NULL"
        self._legacy_values = tuple(_LEGACY_VALUE[c] for c in self._legacy)

    def rechain(self) -> int:
        """Recompute every chain from the stored bytes (after a migration or an import). Returns events chained."""
        conn = self.db.conn
        heads: dict[str, tuple[str, int, int]] = {}
        done = 0
        with self._lock, conn:
            cur = conn.execute("SELECT position, conversation_id, envelope FROM events ORDER BY position")
            while rows := cur.fetchmany(5000):
                updates = []
                for pos, cid, raw in rows:
                    prev, count, _ = heads.get(cid, (GENESIS, 0, 0))
                    digest = chain_hash(prev, raw)
                    heads[cid] = (digest, count + 1, pos)
                    updates.append((prev, digest, pos))
                conn.executemany("UPDATE events SET prev_hash = ?, hash = ? WHERE position = ?", updates)
                done += len(rows)
            conn.execute("DELETE FROM chain_heads")
            conn.executemany(_UPSERT_HEAD, [(cid, h, n, p) for cid, (h, n, p) in heads.items()])
        return done

    # -- writing ----------------------------------------------------------------------------

    def append(self, events: Sequence[StoredEvent], *, rejects: Sequence[Rejected] = (), checkpoint: int | None = None,
               gaps: Sequence[tuple[int, int]] = ()) -> int:
        """Append a batch in one transaction, extending each conversation's hash chain; returns how many were new.

        A position already present is skipped (a redelivery); an envelope id already present, at a position
        of its own (a re-publish, a duplicate past JetStream's window), is kept in `duplicates`, not folded. `checkpoint` (the last JetStream sequence this batch covers) is committed
        in the same transaction, so the mirror and its resume point can never disagree.
        """
        batch = sorted(events, key=_by_position)
        try:
            return self._append(batch, rejects, checkpoint, gaps)
        except sqlite3.Error as exc:
            raise _store_error(exc, self.path) from exc

    def _append(self, batch: list[StoredEvent], rejects: Sequence[Rejected], checkpoint: int | None,
                gaps: Sequence[tuple[int, int]]) -> int:
        with self._lock:
            conn = self.db.conn
            presume = True
            while True:
                # IMMEDIATE: the chain ends read below stay ours until commit, even with another writer on the file.
                conn.execute("BEGIN IMMEDIATE")
                try:
                    new = self._append_locked(batch, rejects, checkpoint, gaps, presume=presume)
                except (sqlite3.IntegrityError, _NotFresh):
                    conn.rollback()
                    if not presume:
                        raise
                    # An id stored before (a duplicate past JetStream's window) or one repeated in the batch.
                    presume = False
                    continue
                except BaseException:
                    conn.rollback()
                    raise
                conn.commit()
                if self._checkpointer is not None:
                    self._checkpointer.appended(new)
                return new

    def _append_locked(self, events: list[StoredEvent], rejects: Sequence[Rejected], checkpoint: int | None,
                       gaps: Sequence[tuple[int, int]], *, presume: bool) -> int:
        conn = self.db.conn
        stored_end = self._stored_end() if events else 0
        presumed = presume and self._presumed_fresh(events, stored_end)
        duplicates: list[tuple[Any, ...]] = []
        fresh = events if presumed else self._fresh(events, stored_end, duplicates)
        heads = self._load_heads({ev.envelope.conversation_id for ev in fresh})
        rows: list[tuple[Any, ...]] = []
        # The hot loop of every append: chain ends as plain tuples (hash, count, last position).
        ends: dict[str, tuple[str, int, int]] = {c: (h.hash, h.count, h.last_position) for c, h in heads.items()}
        encode = _json.encode
        sha256 = hashlib.sha256
        add_row = rows.append
        action = _ACTION
        for ev in fresh:
            e = ev.envelope
            cid = e.conversation_id
            prev, count, last = ends.get(cid, _NO_END)
            pos = ev.position
            if pos <= last:
                if presumed:
                    raise _NotFresh  # e.g. the same event twice in one batch
                raise StoreError(f"position {pos} of conversation {cid} is not after its chain's end "
                                 f"({last}): events must be appended in ledger order")
            raw = ev.raw or encode(e)
            digest = sha256(prev.encode() + raw).hexdigest()  # = integrity.chain_hash(prev, raw), inlined
            ends[cid] = (digest, count + 1, pos)
            add_row((pos, e.id, cid, e.sender, e.recipient, action[e.action], e.capability, e.timestamp, raw, prev,
                     digest, ev.stored_at))
        insert = _insert(or_ignore=not presumed, legacy=self._legacy)
        if self._legacy_values:
            values = self._legacy_values
            conn.executemany(insert, [row + tuple(v(ev.envelope) for v in values) for row, ev in zip(rows, fresh)])
        else:
            conn.executemany(insert, rows)
        conn.executemany(_UPSERT_HEAD, [(c, *end) for c, end in ends.items()])  # every loaded end was extended
        if duplicates:
            conn.executemany("INSERT OR IGNORE INTO duplicates (position, id, conversation_id, first_position, data)"
                             " VALUES (?,?,?,?,?)", duplicates)
        if rejects:
            conn.executemany(
                "INSERT OR IGNORE INTO rejects (position, subject, data, code, reason) VALUES (?,?,?,?,?)",
                [(r.position, r.subject, r.data, r.code, r.reason) for r in rejects],
            )
        if gaps:
            conn.executemany("INSERT OR IGNORE INTO gaps (first, last) VALUES (?, ?)", gaps)
        if checkpoint is not None:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('stream_seq', ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value"
                " WHERE CAST(excluded.value AS INTEGER) > CAST(meta.value AS INTEGER)",
                (str(checkpoint),),
            )
        return len(rows)

    def _stored_end(self) -> int:
        return self.db.conn.execute("SELECT MAX(p) FROM (SELECT MAX(position) AS p FROM events"
                                    " UNION ALL SELECT MAX(position) FROM compacted)").fetchone()[0] or 0

    def _presumed_fresh(self, events: list[StoredEvent], stored_end: int) -> bool:
        """The recorder's usual batch: past the stored end, no id a compacted conversation holds. Its ids
        and positions are then left to the unique indexes: a plain INSERT raises on one stored before or
        repeated in the batch (as the chain loop does on an event repeated in its conversation), rather
        than each being looked up first."""
        if not events:
            return True
        conn = self.db.conn
        if events[0].position <= stored_end:  # `events` comes sorted by position
            return False
        if conn.execute("SELECT EXISTS (SELECT 1 FROM compacted)").fetchone()[0]:
            return not _stored(conn, "id", [ev.envelope.id for ev in events], ("compacted",))
        return True

    def _fresh(self, events: list[StoredEvent], stored_end: int, duplicates: list[tuple[Any, ...]]) -> list[StoredEvent]:
        """The events whose id and position are not stored yet (nor repeated earlier in the batch).

        An event at a position of its own whose envelope id is held already goes to `duplicates` as a row
        (position, id, conversation, first position, bytes): the mirror holds every stream sequence.
        """
        if not events:
            return []
        conn = self.db.conn
        # Positions only need looking up when the batch reaches back into what is stored (a re-read after
        # a restart).
        check_positions = events[0].position <= stored_end  # `events` comes sorted by position
        first_at: dict[str, int] = _positions_of(conn, [ev.envelope.id for ev in events])
        seen_pos: set[int] = _stored(conn, "position", [ev.position for ev in events]) if check_positions else set()
        out: list[StoredEvent] = []
        for ev in events:
            e = ev.envelope
            if ev.position in seen_pos:
                continue  # this very sequence again (a redelivery, a re-read)
            seen_pos.add(ev.position)
            first = first_at.get(e.id)
            if first is not None:
                duplicates.append((ev.position, e.id, e.conversation_id, first, ev.raw or _json.encode(e)))
                continue
            first_at[e.id] = ev.position
            out.append(ev)
        return out

    def _load_heads(self, conversation_ids: set[str]) -> dict[str, Head]:
        """The chain ends of a batch's conversations, a few queries per batch (never a stale cache)."""
        out: dict[str, Head] = {}
        ids = list(conversation_ids)
        for i in range(0, len(ids), _MAX_VARS):
            chunk = ids[i:i + _MAX_VARS]
            for cid, h, n, p in self.db.conn.execute(
                f"SELECT conversation_id, hash, count, last_position FROM chain_heads"
                f" WHERE conversation_id IN ({','.join('?' * len(chunk))})", chunk):
                out[cid] = Head(h, n, p)
        return out

    def append_envelopes(self, envelopes: Sequence[Envelope]) -> int:
        """Append envelopes that come from no stream (imports, tests) at the next positions."""
        with self._lock:
            # Past compacted rows too: a position a compacted event holds would make its envelope a skip.
            start = self._stored_end() + 1
            return self.append([StoredEvent(start + i, e) for i, e in enumerate(envelopes)])

    # -- compaction and restored history --------------------------------------------------------

    def compact_conversation(self, conversation_id: str, status: str, state: bytes, first: int, last: int,
                             count: int) -> bool:
        """Replace one conversation's events up to position `last` by the snapshot `state` of their fold, in
        one transaction; False (nothing written) when its chain no longer ends at `last`."""
        conn = self.db.conn
        with self._lock:
            # IMMEDIATE: from the head check to the DELETE no other writer (the recorder, on its own
            # connection) can extend this conversation, so nothing is removed that the snapshot lacks.
            conn.execute("BEGIN IMMEDIATE")
            try:
                done = _compact_locked(conn, conversation_id, status, state, first, last, count)
            except BaseException:
                conn.rollback()
                raise
            if not done:
                conn.rollback()
                return False
            conn.commit()
        return True

    def vacuum(self) -> None:
        """Rebuild the file without the space removed rows left, and give that space back to the disk."""
        with self._lock:
            self.db.conn.execute("VACUUM")
            # In WAL mode VACUUM writes the smaller copy into the WAL; only a checkpoint that truncates
            # the WAL gives the space back (a reader beside it can hold that off: then less is freed).
            self.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def snapshot_state(self, conversation_id: str) -> bytes | None:
        """A compacted conversation's snapshotted state (JSON), or None."""
        with self._lock:
            if "snapshots" not in self.db.table_names():
                return None
            row = self.db.conn.execute("SELECT state FROM snapshots WHERE conversation_id = ?",
                                       (conversation_id,)).fetchone()
        if row is None:
            return None
        return row[0].encode() if isinstance(row[0], str) else bytes(row[0])

    def restore_link(self, position: int, conversation_id: str, event_id: str, prev_hash: str, digest: str) -> None:
        """Put back one compacted event's chain link (an import of a compacted ledger), extending its chain."""
        with self._lock, self.db.conn as conn:
            inserted = conn.execute(
                "INSERT OR IGNORE INTO compacted (position, conversation_id, id, prev_hash, hash) VALUES (?,?,?,?,?)",
                (position, conversation_id, event_id, prev_hash, digest)).rowcount
            if not inserted:
                return  # held already (the same export imported again): the chain's end is where it was
            conn.execute("INSERT INTO chain_heads (conversation_id, hash, count, last_position) VALUES (?,?,1,?)"
                         " ON CONFLICT(conversation_id) DO UPDATE SET hash = excluded.hash,"
                         " count = chain_heads.count + 1, last_position = excluded.last_position"
                         " WHERE excluded.last_position > chain_heads.last_position",
                         (conversation_id, digest, position))

    def restore_snapshot(self, conversation_id: str, status: str, events: int, first_position: int,
                         last_position: int, head_hash: str, state: bytes, digest: str) -> None:
        with self._lock, self.db.conn as conn:
            conn.execute("INSERT OR REPLACE INTO snapshots (conversation_id, status, events, first_position,"
                         " last_position, head_hash, state, hash) VALUES (?,?,?,?,?,?,?,?)",
                         (conversation_id, status, events, first_position, last_position, head_hash, state, digest))

    # -- export: every kind of row, in position order -------------------------------------------

    def _rows(self, sql: str, args: Sequence[Any]) -> Iterator[tuple[Any, ...]]:
        """A query's rows, a batch at a time under the lock (the connection is shared between threads)."""
        with self._lock:
            cur = self.db.conn.execute(sql, list(args))
        while True:
            with self._lock:
                rows = cur.fetchmany(5000)
            if not rows:
                return
            yield from rows

    def _tables_where(self, conversation_ids: Sequence[str]) -> tuple[set[str], str, list[str]]:
        where = f"WHERE conversation_id IN ({','.join('?' * len(conversation_ids))})" if conversation_ids else ""
        with self._lock:
            return set(self.db.table_names()), where, list(conversation_ids)

    def chained(self) -> bool:
        """Whether the events carry their chain links (a ledger from before hash chains, opened read-only, does not)."""
        with self._lock:
            return "hash" in event_columns(self.db.conn)

    def event_rows(self, conversation_ids: Sequence[str] = ()) -> Iterator[tuple[int, str, str | None, str | None, bytes]]:
        """(position, conversation, prev_hash, hash, envelope bytes) of the events (of these conversations);
        the links are None on a ledger that is not chained."""
        _, where, args = self._tables_where(conversation_ids)
        links = "COALESCE(prev_hash, ''), COALESCE(hash, '')" if self.chained() else "NULL, NULL"
        for pos, cid, prev, digest, raw in self._rows(
                f"SELECT position, conversation_id, {links}, envelope FROM events {where} ORDER BY position", args):
            yield pos, cid, prev, digest, bytes(raw) if isinstance(raw, bytes) else str(raw).encode()

    def compacted_links(self, conversation_ids: Sequence[str] = ()) -> Iterator[tuple[int, str, str, str, str]]:
        """(position, conversation, envelope id, prev_hash, hash) of the compacted events' chain links."""
        tables, where, args = self._tables_where(conversation_ids)
        if "compacted" not in tables:  # older than compaction: nothing was ever compacted
            return
        for pos, cid, eid, prev, digest in self._rows(
                f"SELECT position, conversation_id, id, prev_hash, hash FROM compacted {where} ORDER BY position", args):
            yield pos, cid, eid, prev or "", digest or ""

    def duplicate_rows(self, conversation_ids: Sequence[str] = ()) -> Iterator[tuple[int, str, str, int, bytes]]:
        """(position, envelope id, conversation, first position, bytes) of the messages that repeated an id."""
        tables, where, args = self._tables_where(conversation_ids)
        if "duplicates" not in tables:  # older than duplicates were kept
            return
        for pos, eid, cid, first, data in self._rows(
                f"SELECT position, id, conversation_id, first_position, data FROM duplicates {where}"
                " ORDER BY position", args):
            yield pos, eid, cid, first, bytes(data)

    def snapshot_rows(self, conversation_ids: Sequence[str] = ()) -> list[tuple[str, str, int, int, int, str, str, bytes]]:
        """(conversation, status, events, first, last position, head hash, hash, state) of the snapshots."""
        tables, where, args = self._tables_where(conversation_ids)
        if "snapshots" not in tables:
            return []
        with self._lock:
            rows = self.db.conn.execute(
                "SELECT conversation_id, status, events, first_position, last_position, head_hash, hash,"
                f" state FROM snapshots {where} ORDER BY conversation_id", args).fetchall()
        return [(*r[:7], r[7].encode() if isinstance(r[7], str) else bytes(r[7])) for r in rows]

    # -- integrity ----------------------------------------------------------------------------

    def chains(self) -> Iterator[tuple[str, list[ChainRow], Head | None]]:
        """Each conversation's chain rows (compacted links included) in position order, with its head.

        One conversation at a time, so verifying a ledger needs memory for its largest conversation only.
        Beside a live writer, iterate inside a read transaction (as `verify` does): heads and rows are
        separate queries, and an append between them would look like an inserted event.
        """
        conn = self.db.conn
        tables = table_names(conn)
        heads_cur = conn.execute("SELECT conversation_id, hash, count, last_position FROM chain_heads"
                                 " ORDER BY conversation_id") if "chain_heads" in tables else None
        compacted = "compacted" in tables
        cids_sql = " UNION ".join(f"SELECT conversation_id FROM {t}" for t in ("events", "compacted", "chain_heads")
                                  if t in tables) + " ORDER BY 1"
        heads = {r[0]: Head(r[1], r[2], r[3]) for r in heads_cur.fetchall()} if heads_cur is not None else {}
        for (cid,) in conn.execute(cids_sql).fetchall():
            rows = [ChainRow(p, h, ph, None) for p, h, ph in conn.execute(
                "SELECT position, hash, prev_hash FROM compacted WHERE conversation_id = ? ORDER BY position",
                (cid,))] if compacted else []
            # Bytes as TEXT (the sqlite3 shell) are hashed as their UTF-8; the row check reports the type.
            rows += [ChainRow(p, h, ph, raw if isinstance(raw, bytes) else str(raw).encode()) for p, h, ph, raw in
                     conn.execute("SELECT position, hash, prev_hash, envelope FROM events WHERE conversation_id = ?"
                                  " ORDER BY position", (cid,))]
            rows.sort(key=lambda r: r.position)
            yield cid, rows, heads.get(cid)

    def verify(self) -> VerifyReport:
        """Check every conversation's chain, every compacted conversation's snapshot, every row against its
        envelope, and the positions against the stream sequences mirrored. Reads only."""
        with self._lock, self._read_snapshot():
            conn = self.db.conn
            if {"hash", "prev_hash"} <= event_columns(conn):
                report = verify_stream(self.chains())
            else:
                # Chaining it here would bless whatever was edited before the columns went: report, never write.
                report = VerifyReport(events=self.count(), conversations=len(self.conversation_ids()),
                                      issues=unchained_issues(conn))
            report.issues.extend(row_issues(conn))
            report.issues.extend(coverage_issues(conn, self.checkpoint()))
            report.issues.sort(key=lambda x: (x.position is None, x.position or 0))
            heads = self.heads() if "chain_heads" in table_names(conn) else {}
            snapshots = conn.execute("SELECT conversation_id, head_hash, state, hash, last_position FROM snapshots"
                                     ).fetchall() if "snapshots" in table_names(conn) else []
            for cid, head_hash, state, digest, last in snapshots:
                head = heads.get(cid)
                body = state.encode() if isinstance(state, str) else bytes(state or b"")
                if snapshot_hash(head_hash, body) != digest:
                    report.issues.append(Issue(IssueKind.SNAPSHOT, cid, last, "snapshot state does not match its hash"))
                elif head is None or (head.last_position == last and head.hash != head_hash):
                    report.issues.append(Issue(IssueKind.SNAPSHOT, cid, last,
                                               "snapshot is not bound to the end of the conversation's chain"))
        return report

    @contextlib.contextmanager
    def _read_snapshot(self) -> Iterator[None]:
        """Every read inside sees the file as of one moment (WAL: writers on other connections go on).

        Call with the lock held; inside a transaction already, that transaction is the snapshot.
        """
        conn = self.db.conn
        if conn.in_transaction:
            yield
            return
        conn.execute("BEGIN")
        try:
            yield
        finally:
            conn.rollback()  # only read: nothing to keep

    def gaps(self) -> list[tuple[int, int]]:
        """Ranges of JetStream sequences the recorder found missing from the stream."""
        with self._lock:
            if "gaps" not in self.db.table_names():
                return []
            return [(a, b) for a, b in self.db.conn.execute("SELECT first, last FROM gaps ORDER BY first")]

    def heads(self) -> dict[str, Head]:
        with self._lock:
            rows = self.db.conn.execute("SELECT conversation_id, hash, count, last_position FROM chain_heads").fetchall()
        return {r[0]: Head(r[1], r[2], r[3]) for r in rows}

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

    def holds(self, ids: Iterable[str]) -> set[str]:
        """Which of these envelope ids the ledger holds (compacted ones included)."""
        with self._lock:
            return _stored(self.db.conn, "id", list(dict.fromkeys(ids)))

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

    def held(self) -> tuple[int, int, int]:
        """(first, last, how many) of the stream messages the file holds: envelopes, messages that were not
        envelopes, and repeated ids, each at its own position; (0, 0, 0) for an empty ledger."""
        with self._lock:
            tables = [t for t in ("events", "rejects", "duplicates") if t in self.db.table_names()]
            union = " UNION ALL ".join(f"SELECT position FROM {t}" for t in tables)
            first, last, n = self.db.conn.execute(f"SELECT MIN(position), MAX(position), COUNT(*) FROM ({union})"
                                                  ).fetchone()
        return int(first or 0), int(last or 0), int(n)

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

    def count_matching(self, flt: EventFilter | None = None) -> int:
        flt = flt or EventFilter()
        where, args = self._where(flt)
        with self._lock:
            row = self.db.conn.execute(f"SELECT COUNT(*) FROM events WHERE position > ? AND {where}",
                                       [flt.after, *args]).fetchone()
        return int(row[0])

    def read(self, flt: EventFilter | None = None, *, batch: int = 5000, trusted: bool = False,
             damaged: list[Damaged] | None = None) -> Generator[StoredEvent, None, None]:
        """Stream events in position order, `batch` rows per query (keyset pagination, bounded memory).

        `trusted=True` (replay) skips re-validating ids and addresses the recorder validated already:
        the envelopes are StoredEnvelope instances, which are Envelopes in every other respect.
        An envelope that does not decode is a StoreError, or, given a `damaged` list, is added to it and
        skipped, so that one bad row costs a tool that row, not the ledger.
        """
        flt = flt or EventFilter()
        where, args = self._where(flt)
        after = flt.after
        decode = _trusted_decoder.decode if trusted else _stored_codec.decode
        while True:
            with self._lock:
                rows = self.db.conn.execute(
                    f"SELECT position, envelope, {self._stored_at} FROM events WHERE position > ? AND {where}"
                    " ORDER BY position LIMIT ?",
                    [after, *args, batch],
                ).fetchall()
            for pos, raw, stored_at in rows:
                if type(raw) is not bytes:  # TEXT (the sqlite3 shell), a number, NULL: written around the store
                    raw = str(raw).encode()
                try:
                    env = decode(raw)
                except (msgspec.DecodeError, InvalidMessage) as exc:
                    if damaged is None:
                        raise StoreError(f"the envelope stored at position {pos} does not decode ({exc}); "
                                         "the file was altered — `ledgerbus verify` lists what changed") from None
                    damaged.append(Damaged(pos, self._conversation_of(pos), str(exc)))
                    continue
                yield StoredEvent(pos, env, raw, stored_at)
            if len(rows) < batch:
                return
            after = rows[-1][0]

    def _conversation_of(self, position: int) -> str:
        with self._lock:
            row = self.db.conn.execute("SELECT conversation_id FROM events WHERE position = ?", (position,)).fetchone()
        return str(row[0]) if row else "?"

    def envelopes(self, conversation_id: str | None = None, *, damaged: list[Damaged] | None = None) -> list[Envelope]:
        flt = EventFilter(conversation_ids=(conversation_id,)) if conversation_id else None
        return [ev.envelope for ev in self.read(flt, damaged=damaged)]

    def restore_duplicate(self, position: int, event_id: str, conversation_id: str, first_position: int,
                          data: bytes) -> None:
        """Put back a duplicate's row (an import of an exported ledger)."""
        with self._lock, self.db.conn as conn:
            conn.execute("INSERT OR IGNORE INTO duplicates (position, id, conversation_id, first_position, data)"
                         " VALUES (?,?,?,?,?)", (position, event_id, conversation_id, first_position, data))

    def duplicates(self) -> list[tuple[int, str, int]]:
        """(position, envelope id, position of its first copy) of every stream message repeating an id."""
        with self._lock:
            if "duplicates" not in self.db.table_names():  # read-only, from before duplicates were kept
                return []
            return [(p, i, f) for p, i, f in self.db.conn.execute(
                "SELECT position, id, first_position FROM duplicates ORDER BY position")]

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

    def conversations_starting(self, prefix: str, *, limit: int = 10) -> list[str]:
        """Conversation ids that start with `prefix`, compacted ones included (ids are ASCII tokens, so
        this is a range scan of the conversation index)."""
        args: tuple[str, ...] = (prefix, prefix + "\x7f")
        sql = "SELECT conversation_id FROM events WHERE conversation_id >= ? AND conversation_id < ?"
        with self._lock:
            if "chain_heads" in self.db.table_names():
                sql += " UNION SELECT conversation_id FROM chain_heads WHERE conversation_id >= ? AND conversation_id < ?"
                args += args
            rows = self.db.conn.execute(f"SELECT DISTINCT * FROM ({sql}) LIMIT {int(limit)}", args).fetchall()
        return sorted(r[0] for r in rows)

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        with self._lock:
            self.db.conn.close()
