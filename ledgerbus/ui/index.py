"""The conversation list of a SQLite ledger, newest first, in pages whose cost does not grow with the ledger.

A page walks the events table backwards from a cursor (the position where the previous page's oldest
conversation began) and keeps the conversations that *begin* in that stretch, each checked by one look-up
in the (conversation_id, position) index. Only the conversations on the page are folded.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import NamedTuple

from ledgerbus.errors import StoreError
from ledgerbus.eventstore.base import EventFilter, Rejected, StoredEvent
from ledgerbus.eventstore.fold import ConversationState, ConversationStatus, fold
from ledgerbus.eventstore.sqlite import SQLiteEventStore
from ledgerbus.ui.summary import Filters, Summary, matches, summarize
from ledgerbus.ui.tally import CHUNK, AgentRow, AgentTally

#: Rows a filtered page may look at before it answers with what it found and a cursor to go on from.
SCAN_BUDGET = 50_000
_BATCH = 2_000


class Page:
    def __init__(self, rows: list[Summary], next_cursor: int | None) -> None:
        self.rows, self.next_cursor = rows, next_cursor


class DeadLetter(NamedTuple):
    position: int
    id: str
    conversation_id: str
    task_id: str
    capability: str
    agent: str
    deliveries: int | None
    redriven_by: str | None


class LedgerIndex:
    def __init__(self, path: Path) -> None:
        self.store = SQLiteEventStore(path, readonly=True)
        try:
            self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the ledger {path}: {exc}") from None
        self._lock = threading.Lock()
        self._tally = AgentTally()
        self._tally_lock = threading.Lock()  # one counter at a time: a page's and the start-up catch-up
        self._tally_conn: sqlite3.Connection | None = None
        self.path = path

    def close(self) -> None:
        self.store.close()
        self._conn.close()
        with self._tally_lock:
            if self._tally_conn is not None:
                self._tally_conn.close()

    def last_position(self) -> int:
        return self.store.last_position()

    def _first_position(self, conversation_id: str) -> int | None:
        row = self._conn.execute("SELECT MIN(position) FROM events WHERE conversation_id = ?",
                                 (conversation_id,)).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def summary(self, conversation_id: str) -> Summary | None:
        with self._lock:
            first = self._first_position(conversation_id)
        if first is None:
            return None
        return summarize(fold(self.store.envelopes(conversation_id), conversation_id), first)

    def conversation_of(self, event_id: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT conversation_id FROM events WHERE id = ?", (event_id,)).fetchone()
        return str(row[0]) if row else None

    def changed_since(self, after: int) -> list[str]:
        """Conversations with an event past `after`, in the order they first appear there."""
        with self._lock:
            rows = self._conn.execute("SELECT conversation_id FROM events WHERE position > ? ORDER BY position",
                                      (after,)).fetchall()
        return list(dict.fromkeys(r[0] for r in rows))

    def page(self, filters: Filters, *, before: int | None = None, size: int = 50) -> Page:
        if filters.prefix:
            return self._by_prefix(filters, size)
        cursor = before if before is not None else self.last_position() + 1
        out: list[Summary] = []
        scanned = 0
        starts: dict[str, int] = {}  # conversation id -> the position it began at
        while len(out) < size and scanned < SCAN_BUDGET and cursor > 1:
            with self._lock:
                rows = self._conn.execute(
                    "SELECT position, conversation_id FROM events WHERE position < ? ORDER BY position DESC LIMIT ?",
                    (cursor, _BATCH)).fetchall()
            if not rows:
                cursor = 0
                break
            for pos, cid in rows:
                scanned += 1
                cursor = pos
                if cid not in starts:
                    with self._lock:
                        starts[cid] = self._first_position(cid) or pos
                if starts[cid] != pos:
                    continue  # not where it began: its row comes when the walk gets there
                s = summarize(fold(self.store.envelopes(cid), cid), pos)
                if matches(s, filters):
                    out.append(s)
                    if len(out) >= size:
                        break
        more = cursor > 1 and (len(out) >= size or scanned >= SCAN_BUDGET)
        return Page(out, cursor if more else None)

    def _by_prefix(self, filters: Filters, size: int) -> Page:
        out = []
        for cid in self.store.conversations_starting(filters.prefix, limit=size):
            s = self.summary(cid)
            if s is not None and matches(s, filters):
                out.append(s)
        out.sort(key=lambda s: -s.first_position)
        return Page(out, None)

    def events(self, conversation_id: str) -> list[StoredEvent]:
        return list(self.store.read(EventFilter(conversation_ids=(conversation_id,))))

    def recent_verdicts(self, limit: int = 200) -> list[tuple[int, str, str, str, str, int]]:
        """The newest verdicts on attempts and dead letters: (position, conversation, task, from → to, code, attempt)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT position, conversation_id, task_id, sender || ' → ' || recipient, json_extract(error, '$.code'), attempt"
                " FROM envelopes WHERE action = 'ERROR' ORDER BY position DESC LIMIT ?", (limit * 5,)).fetchall()
        keep = {"NO_RECEIPT", "STALLED", "TIMED_OUT", "DEADLINE_EXCEEDED", "DEAD_LETTER", "BREAKER_OPEN"}
        return [tuple(r) for r in rows if r[4] in keep][:limit]  # type: ignore[misc]

    def dead_letters(self, limit: int = 200) -> list[DeadLetter]:
        """The newest dead letters, each with the REQUEST that re-drove it, if one did.

        A letter's id is `deadletter-<stream sequence>` (security.deadletters): a range of the id index, not a scan."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT position, id, conversation_id, CAST(envelope AS TEXT) FROM events WHERE id >= 'deadletter-'"
                " AND id < 'deadletter.' ORDER BY position DESC LIMIT ?", (limit,)).fetchall()
            out = []
            for pos, lid, cid, raw in rows:
                try:
                    env = json.loads(raw)
                except ValueError:
                    continue  # a damaged row: Integrity shows it
                err = env.get("error") or {}
                if err.get("code") != "DEAD_LETTER":
                    continue
                again = self._conn.execute(
                    "SELECT id FROM envelopes WHERE conversation_id = ? AND action = 'REQUEST' AND causation_id = ?"
                    " ORDER BY position LIMIT 1", (cid, lid)).fetchone()
                out.append(DeadLetter(pos, lid, cid, str(env.get("taskId", "")), str(env.get("capability", "")),
                                      str(env.get("sender", "")), (err.get("details") or {}).get("deliveries"),
                                      again[0] if again else None))
        return out

    def running(self, limit: int = 500) -> list[ConversationState]:
        """Folded states of the newest conversations still RUNNING (where a stall can be happening now), among
        those that began in the last SCAN_BUDGET positions.

        Only those whose last event is not the answer to their first REQUEST are folded: at a million events,
        folding every conversation of the stretch to find the few running took most of a second."""
        since = self.last_position() - SCAN_BUDGET
        with self._lock:
            rows = self._conn.execute(
                "SELECT f.conversation_id FROM (SELECT conversation_id, MIN(position) AS p FROM events WHERE position > ?"
                " GROUP BY conversation_id) AS f JOIN events AS r ON r.position = f.p JOIN events AS a ON a.position ="
                " (SELECT MAX(position) FROM events WHERE conversation_id = f.conversation_id)"
                " WHERE NOT EXISTS (SELECT 1 FROM events AS b WHERE b.conversation_id = f.conversation_id AND b.position < f.p)"
                " AND NOT (a.action IN ('RESPONSE', 'ERROR') AND a.sender = r.recipient AND a.recipient = r.sender"
                " AND a.sender != a.recipient) ORDER BY f.p DESC LIMIT ?", (since, limit)).fetchall()
        states = [fold(self.store.envelopes(cid), cid) for (cid,) in rows]
        return [st for st in states if st.status is ConversationStatus.RUNNING]

    def agents(self, *, steps: int = 1) -> tuple[list[AgentRow], int, int]:
        """Per agent: (name, requests asked of it, acks, responses, errors) — every agent that took part —
        counted up to a position, after at most `steps` more chunks (tally.py): (rows, counted up to, last)."""
        last = self.last_position()
        for _ in range(steps):
            if self.count_agents(last):
                break
        with self._tally_lock:
            return self._tally.rows(), self._tally.upto, last

    def count_agents(self, last: int) -> bool:
        """Count one more chunk of positions towards `last`; True once they are all counted."""
        with self._tally_lock:
            start = self._tally.upto
            end = min(last, start + CHUNK)
            if end > start:
                # A connection of its own: the page queries must not queue behind a chunk.
                if self._tally_conn is None:
                    self._tally_conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
                rows = self._tally_conn.execute(
                    "SELECT sender, recipient, action, COUNT(*) FROM events WHERE position > ? AND position <= ?"
                    " GROUP BY sender, recipient, action", (start, end)).fetchall()
                self._tally.add(rows, end)
            return end >= last

    def rejects(self) -> list[Rejected]:
        return self.store.rejects()
