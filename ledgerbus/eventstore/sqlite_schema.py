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
    [hash] TEXT,
    [payload] TEXT GENERATED ALWAYS AS (CASE WHEN json_valid(CAST([envelope] AS TEXT))
        THEN json_extract(CAST([envelope] AS TEXT), '$.payload') END) VIRTUAL,
    [error] TEXT GENERATED ALWAYS AS (CASE WHEN json_valid(CAST([envelope] AS TEXT))
        THEN json_extract(CAST([envelope] AS TEXT), '$.error') END) VIRTUAL
)
"""


def stores_payload(db: sqlite_utils.Database) -> bool:
    """True for ledgers from before payload and error became virtual columns (the store must write them)."""
    for row in db.conn.execute("PRAGMA table_xinfo(events)"):
        if row[1] == "payload":
            return row[6] == 0  # hidden: 0 = an ordinary column, 2/3 = generated
    return False


def ensure_schema(db: sqlite_utils.Database) -> bool:
    """Create what is missing. True when an older ledger got hash-chain columns and must be chained."""
    if "events" not in db.table_names():
        # payload and error are views into the envelope (virtual columns): SQL can still filter on them,
        # but each append writes the payload once, not twice, and does not re-encode it. Bytes that are
        # not JSON (a damaged row) read as NULL there, so the row can still be selected and looked at.
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
    if "hash" not in db["events"].columns_dict:
        # A ledger written before hash chains existed: add the columns; the store chains what is there.
        with db.conn:
            db.conn.execute("ALTER TABLE events ADD COLUMN prev_hash TEXT")
            db.conn.execute("ALTER TABLE events ADD COLUMN hash TEXT")
        return True
    return False
