"""The SQLite ledger's tables, created on first open and brought forward from older releases."""

from __future__ import annotations

import sqlite_utils

_EVENTS = """
CREATE TABLE [events] (
    [position] INTEGER PRIMARY KEY,
    [id] TEXT NOT NULL,
    [conversation_id] TEXT NOT NULL,
    [task_id] TEXT NOT NULL,
    [causation_id] TEXT,
    [sender] TEXT NOT NULL,
    [recipient] TEXT NOT NULL,
    [action] TEXT NOT NULL,
    [capability] TEXT NOT NULL,
    [attempt] INTEGER NOT NULL,
    [timestamp] INTEGER NOT NULL,
    [envelope] BLOB NOT NULL,
    [prev_hash] TEXT,
    [hash] TEXT
)
"""

_JSON = "CASE WHEN json_valid(CAST(e.envelope AS TEXT)) THEN json_extract(CAST(e.envelope AS TEXT), '$.{}') END"

# What a person queries: the events' columns, the envelope as JSON text, and its payload and error. A view
# costs an append nothing; generated columns, even VIRTUAL ones, are computed by SQLite on every INSERT
# (two JSON parses each: about 1 µs an event). Bytes that are not JSON (a damaged row) read as NULL there,
# so the row can still be selected and looked at.
_ENVELOPES = f"""
CREATE VIEW [envelopes] AS SELECT e.position, e.id, e.conversation_id, e.task_id, e.causation_id, e.sender,
    e.recipient, e.action, e.capability, e.attempt, e.timestamp, {_JSON.format('payload')} AS payload,
    {_JSON.format('error')} AS error, CAST(e.envelope AS TEXT) AS envelope, e.prev_hash, e.hash FROM events AS e
"""


def _payload_columns(db: sqlite_utils.Database) -> dict[str, int]:
    """The events table's payload and error columns, if any, by name -> `hidden` (0 = an ordinary column,
    2 = VIRTUAL generated, 3 = STORED generated)."""
    return {row[1]: row[6] for row in db.conn.execute("PRAGMA table_xinfo(events)") if row[1] in ("payload", "error")}


def stores_payload(db: sqlite_utils.Database) -> bool:
    """True for the oldest ledgers, which store payload and error beside the envelope (the store must write them)."""
    return _payload_columns(db).get("payload") == 0


def ensure_schema(db: sqlite_utils.Database) -> bool:
    """Create what is missing. True when an older ledger got hash-chain columns and must be chained."""
    if "events" not in db.table_names():
        # The payload is written once, inside the envelope; the `envelopes` view reads it out for SQL.
        db.conn.execute(_EVENTS)
        # Only the indexes replay and dedup need: every extra one costs each append a B-tree insert.
        # Time filters ride the position scan (timestamps follow positions closely).
        db.table("events").create_index(["id"], unique=True)
        db.table("events").create_index(["conversation_id", "position"])
    if "rejects" not in db.table_names():
        db.table("rejects").create(
            {"position": int, "subject": str, "data": bytes, "code": str, "reason": str}, pk="position"
        )
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
    generated = [name for name, hidden in _payload_columns(db).items() if hidden == 2]
    if generated:
        with db.conn:
            for name in generated:
                db.conn.execute(f"ALTER TABLE events DROP COLUMN [{name}]")
    unchained = "hash" not in db["events"].columns_dict
    if unchained:
        # A ledger written before hash chains existed: add the columns; the store chains what is there.
        with db.conn:
            db.conn.execute("ALTER TABLE events ADD COLUMN prev_hash TEXT")
            db.conn.execute("ALTER TABLE events ADD COLUMN hash TEXT")
    if "envelopes" not in db.view_names():
        db.conn.execute(_ENVELOPES)
    return unchained
