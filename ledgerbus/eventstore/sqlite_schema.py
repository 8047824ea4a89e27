"""The SQLite ledger's tables, created on first open and brought forward from older releases."""

from __future__ import annotations

import sqlite3

import sqlite_utils

_EVENTS = """
CREATE TABLE [events] (
    [position] INTEGER PRIMARY KEY,
    [id] TEXT NOT NULL,
    [conversation_id] TEXT NOT NULL,
    [sender] TEXT NOT NULL,
    [recipient] TEXT NOT NULL,
    [action] TEXT NOT NULL,
    [capability] TEXT NOT NULL,
    [timestamp] INTEGER NOT NULL,
    [envelope] BLOB NOT NULL,
    [prev_hash] TEXT,
    [hash] TEXT,
    [stored_at] INTEGER
)
"""

#: Columns older ledgers store beside the envelope, which new ones leave to the `envelopes` view.
LEGACY_COLUMNS = ("task_id", "causation_id", "attempt", "payload", "error")


def _field(name: str) -> str:
    """An envelope field read out of the stored bytes, NULL when they are not JSON."""
    return (f"CASE WHEN json_valid(CAST(e.envelope AS TEXT)) THEN json_extract(CAST(e.envelope AS TEXT), '$.{name}')"
            " END")


# What a person queries: every envelope field as a column, and the envelope as JSON text. The events table
# stores only what the store itself selects on (and the chain); the view reads the rest out of the envelope
# when asked, so an append neither writes nor computes it. Generated columns, even VIRTUAL ones, would be
# computed by SQLite on every INSERT (two JSON parses each). Bytes that are not JSON (a damaged row) read
# as NULL there, so the row can still be selected and looked at.
_ENVELOPES = f"""
CREATE VIEW [envelopes] AS SELECT e.position, e.id, e.conversation_id, {_field('taskId')} AS task_id,
    {_field('causationId')} AS causation_id, e.sender, e.recipient, e.action, e.capability,
    coalesce({_field('attempt')}, 1) AS attempt, e.timestamp, {_field('payload')} AS payload,
    {_field('error')} AS error, CAST(e.envelope AS TEXT) AS envelope, e.prev_hash, e.hash FROM events AS e
"""


def _xinfo(db: sqlite_utils.Database) -> dict[str, int]:
    """The events table's columns by name -> `hidden` (0 = an ordinary column, 2 = VIRTUAL generated,
    3 = STORED generated)."""
    return {row[1]: row[6] for row in db.conn.execute("PRAGMA table_xinfo(events)")}


def has_stored_at(db: sqlite_utils.Database) -> bool:
    """Whether this ledger records when JetStream stored each event (ledgers before that do not)."""
    return "stored_at" in _xinfo(db)


def legacy_columns(db: sqlite_utils.Database) -> tuple[str, ...]:
    """Which of LEGACY_COLUMNS this ledger stores (an older release created it); the store goes on writing them."""
    stored = {name for name, hidden in _xinfo(db).items() if hidden == 0}
    return tuple(c for c in LEGACY_COLUMNS if c in stored)


def ensure_schema(db: sqlite_utils.Database) -> bool:
    """Create what is missing. True when an older ledger got hash-chain columns and must be chained."""
    if "events" not in db.table_names():
        # The payload is written once, inside the envelope; the `envelopes` view reads it out for SQL, as
        # it does task_id, causation_id and attempt, which the store never selects on.
        db.conn.execute(_EVENTS)
        # Only the indexes replay and dedup need: every extra one costs each append a B-tree insert.
        # Time filters ride the position scan (timestamps follow positions closely).
        db.table("events").create_index(["id"], unique=True)
        db.table("events").create_index(["conversation_id", "position"])
    if "rejects" not in db.table_names():
        db.table("rejects").create(
            {"position": int, "subject": str, "data": bytes, "code": str, "reason": str}, pk="position"
        )
    if "duplicates" not in db.table_names():
        # A stream message repeating an envelope id already stored (a raw re-publish, or one past the
        # duplicate window): kept at its sequence, with its bytes, and never folded a second time.
        db.table("duplicates").create({"position": int, "id": str, "conversation_id": str, "first_position": int,
                                       "data": bytes}, pk="position")
    if "meta" not in db.table_names():
        db.table("meta").create({"key": str, "value": str}, pk="key")
    if "gaps" not in db.table_names():
        # JetStream sequences the recorder never saw (retention, a purge): reported, never silent.
        db.table("gaps").create({"first": int, "last": int}, pk="first")
    if "chain_heads" not in db.table_names():
        db.table("chain_heads").create({"conversation_id": str, "hash": str, "count": int, "last_position": int},
                                 pk="conversation_id")
    # Compaction keeps each removed event's chain link, so the ledger stays verifiable.
    if "compacted" not in db.table_names():
        db.table("compacted").create({"position": int, "conversation_id": str, "id": str, "prev_hash": str, "hash": str},
                               pk="position")
        db.table("compacted").create_index(["conversation_id", "position"])
        db.table("compacted").create_index(["id"], unique=True)
    if "snapshots" not in db.table_names():
        db.table("snapshots").create({"conversation_id": str, "status": str, "events": int, "first_position": int,
                                "last_position": int, "head_hash": str, "state": bytes, "hash": str},
                               pk="conversation_id")
    # Ledgers of the release before had payload and error as VIRTUAL columns: dropping those rewrites no
    # row (nothing of them is stored), and their appends stop paying for two JSON parses an event.
    generated = [name for name, hidden in _xinfo(db).items() if hidden == 2 and name in ("payload", "error")]
    if generated and sqlite3.sqlite_version_info >= (3, 35):  # DROP COLUMN's first release; older ones keep them
        with db.conn:
            for name in generated:
                db.conn.execute(f"ALTER TABLE events DROP COLUMN [{name}]")
    unchained = "hash" not in db["events"].columns_dict
    if unchained:
        # A ledger written before hash chains existed: add the columns; the store chains what is there.
        with db.conn:
            db.conn.execute("ALTER TABLE events ADD COLUMN prev_hash TEXT")
            db.conn.execute("ALTER TABLE events ADD COLUMN hash TEXT")
    if "stored_at" not in db["events"].columns_dict:
        # When JetStream stored each event (the time stall checks run on); older rows keep NULL, and the
        # fold falls back to their envelopes' timestamps. Adding a nullable column rewrites no row.
        with db.conn:
            db.conn.execute("ALTER TABLE events ADD COLUMN stored_at INTEGER")
    if "envelopes" not in db.view_names():
        db.conn.execute(_ENVELOPES)
    return unchained
