"""Actions a page may take, off unless `ledgerbus ui --actions`; then each needs the token printed at start-up.

Export is the same `export_store` as `ledgerbus export`; the store's lock keeps it consistent with the
reads the pages make."""

from __future__ import annotations

import hmac
import io
import secrets

from ledgerbus.eventstore.jsonl import export_store
from ledgerbus.eventstore.sqlite import SQLiteEventStore


def new_token() -> str:
    return secrets.token_urlsafe(24)


def allowed(expected: str | None, given: str | None) -> bool:
    """Whether `given` is the token (compared in constant time); never when actions are off."""
    return expected is not None and given is not None and hmac.compare_digest(expected.encode(), given.encode())


def export_jsonl(store: SQLiteEventStore, conversation_id: str) -> bytes:
    buf = io.BytesIO()
    export_store(store, buf, conversation_ids=(conversation_id,))
    return buf.getvalue()
