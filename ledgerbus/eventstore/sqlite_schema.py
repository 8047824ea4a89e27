"""The SQLite ledger's tables, created on first open and brought forward from older releases."""

from __future__ import annotations

import sqlite_utils


def ensure_schema(db: sqlite_utils.Database) -> bool:
    """Create what is missing. True when an older ledger got hash-chain columns and must be chained."""
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
                "prev_hash": str,
                "hash": str,
            },
            pk="position",
            not_null={"id", "conversation_id", "task_id", "sender", "recipient", "action", "capability",
                      "attempt", "timestamp", "payload", "envelope"},
        )
        # Only the indexes replay and dedup need: every extra one costs each append a B-tree insert.
        # Time filters ride the position scan (timestamps follow positions closely).
        db["events"].create_index(["id"], unique=True)
        db["events"].create_index(["conversation_id", "position"])
    if "rejects" not in db.table_names():
        db["rejects"].create(
            {"position": int, "subject": str, "data": bytes, "code": str, "reason": str}, pk="position"
        )
    if "meta" not in db.table_names():
        db["meta"].create({"key": str, "value": str}, pk="key")
    if "gaps" not in db.table_names():
        # JetStream sequences the recorder never saw (retention, a purge): reported, never silent.
        db["gaps"].create({"first": int, "last": int}, pk="first")
    if "chain_heads" not in db.table_names():
        db["chain_heads"].create({"conversation_id": str, "hash": str, "count": int, "last_position": int},
                                 pk="conversation_id")
    # Compaction keeps each removed event's chain link, so the ledger stays verifiable.
    if "compacted" not in db.table_names():
        db["compacted"].create({"position": int, "conversation_id": str, "id": str, "prev_hash": str, "hash": str},
                               pk="position")
        db["compacted"].create_index(["conversation_id", "position"])
        db["compacted"].create_index(["id"], unique=True)
    if "snapshots" not in db.table_names():
        db["snapshots"].create({"conversation_id": str, "status": str, "events": int, "first_position": int,
                                "last_position": int, "head_hash": str, "state": bytes, "hash": str},
                               pk="conversation_id")
    if "hash" not in db["events"].columns_dict:
        # A ledger written before hash chains existed: add the columns; the store chains what is there.
        with db.conn:
            db.conn.execute("ALTER TABLE events ADD COLUMN prev_hash TEXT")
            db.conn.execute("ALTER TABLE events ADD COLUMN hash TEXT")
        return True
    return False
