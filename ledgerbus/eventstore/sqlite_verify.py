"""What `verify` checks in a SQLite ledger beyond each conversation's chain: the rows against their own
envelopes, and the ledger's positions against the stream sequences it says it mirrored.

The chain covers the envelope bytes only. The columns beside them (sender, action, timestamp…) are what
SQL and filtered replays read, so an edit there changes what people see without touching a hash; and a
whole conversation deleted with its chain head leaves no chain to break. Reads only: `verify` never writes.
"""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Iterator
from operator import itemgetter
from typing import Any

import msgspec

from ledgerbus.errors import InvalidMessage
from ledgerbus.eventstore.integrity import Issue, IssueKind
from ledgerbus.schemas.codec import Codec
from ledgerbus.schemas.envelope import Envelope

# The codec's rules without its size limits (as the store's readers): a reader is not the door.
_codec = Codec(max_bytes=1 << 62, max_depth=1 << 30)
_json = msgspec.json.Encoder()


def _text(value: Any) -> str | None:
    return _json.encode(value).decode() if value is not None else None


#: Each column the store writes beside the envelope, and the value the envelope gives it.
_EXPECTED: dict[str, Any] = {
    "id": lambda e: e.id, "conversation_id": lambda e: e.conversation_id, "sender": lambda e: e.sender,
    "recipient": lambda e: e.recipient, "action": lambda e: e.action.value, "capability": lambda e: e.capability,
    "timestamp": lambda e: e.timestamp, "task_id": lambda e: e.task_id, "causation_id": lambda e: e.causation_id,
    "attempt": lambda e: e.attempt, "payload": lambda e: _text(e.payload), "error": lambda e: _text(e.error),
}


def table_names(conn: sqlite3.Connection) -> set[str]:
    return {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def event_columns(conn: sqlite3.Connection) -> set[str]:
    return {row[1] for row in conn.execute("PRAGMA table_info(events)")}


def row_issues(conn: sqlite3.Connection) -> Iterator[Issue]:
    """Every row whose envelope does not decode, is not stored as the BLOB the store writes, or whose
    columns say something else than its envelope."""
    columns = [c for c in _EXPECTED if c in event_columns(conn)]
    cid_of = "conversation_id" if "conversation_id" in columns else "''"
    cur = conn.execute(f"SELECT position, {cid_of}, typeof(envelope), envelope, {', '.join(columns)} FROM events"
                       " ORDER BY position")
    while rows := cur.fetchmany(5000):
        for pos, cid, kind, raw, *stored in rows:
            cid = str(cid)
            if kind != "blob":
                yield Issue(IssueKind.ALTERED, cid, pos, f"the envelope is stored as {kind.upper()}, not as the BLOB "
                                                          "the store writes: it was written around the store")
            data = raw if isinstance(raw, bytes) else str(raw).encode()
            try:
                env: Envelope = _codec.decode(data)
            except InvalidMessage as exc:
                yield Issue(IssueKind.DAMAGED, cid, pos, f"the envelope does not decode ({exc.reason}); the ledger "
                                                         "tools skip it")
                continue
            wrong = [f"{c} is {have!r}, the envelope says {want!r}" for c, have in zip(columns, stored)
                     if have != (want := _EXPECTED[c](env))]
            if wrong:
                yield Issue(IssueKind.COLUMN, cid, pos, "a column read by SQL and filtered replays disagrees with "
                                                        "the envelope: " + "; ".join(wrong))


def unchained_issues(conn: sqlite3.Connection) -> list[Issue]:
    """The events table has lost its chain columns: one finding per conversation, at its first event."""
    return [Issue(IssueKind.UNCHAINED, str(cid), pos,
                  "the events table has no hash/prev_hash columns (dropped, or a ledger from before hash chains): "
                  "nothing of this conversation can be checked; verify never writes — a writer (the recorder) "
                  "chains such a ledger when it opens it")
            for cid, pos in conn.execute("SELECT conversation_id, MIN(position) FROM events GROUP BY conversation_id"
                                         " ORDER BY 2")]


def coverage_issues(conn: sqlite3.Connection, checkpoint: int) -> list[Issue]:
    """Stream sequences up to the recorder's checkpoint that no table accounts for.

    Every sequence the recorder mirrored is an event (or a compacted one's link), a reject, a duplicate,
    or inside a recorded gap: one that is none of these was deleted around the store.
    """
    if checkpoint <= 0:
        return []  # not mirrored from a stream (an import, a test): positions need not be contiguous
    tables = table_names(conn)
    spans: list[Iterator[tuple[int, int]]] = []
    for table in ("events", "compacted", "rejects", "duplicates"):
        if table in tables:
            cur = conn.execute(f"SELECT position, position FROM {table} ORDER BY position")
            spans.append(iter(cur))
    if "gaps" in tables:
        spans.append(iter(conn.execute("SELECT first, last FROM gaps ORDER BY first")))
    issues: list[Issue] = []

    def hole(first: int, last: int) -> None:
        what = f"stream sequence {first}" if first == last else f"stream sequences {first}..{last}"
        issues.append(Issue(IssueKind.MISSING, "", first,
                            f"{what} of the {checkpoint} mirrored are in no table (no event, reject, duplicate or "
                            "recorded gap): deleted around the store, a whole conversation with its chain head?"))

    expected = 1
    for first, last in heapq.merge(*spans, key=itemgetter(0)):
        if first > checkpoint:
            break
        if first > expected:
            hole(expected, first - 1)
        expected = max(expected, last + 1)
    if expected <= checkpoint:
        hole(expected, checkpoint)
    return issues
