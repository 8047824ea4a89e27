"""Actions a page may take, off unless `ledgerbus ui --actions`; then each needs the token printed at start-up.

Export is the same `export_store` as `ledgerbus export`, fork the same `replaymodes.fork` as `ledgerbus fork`,
re-execute the same `replaymodes.re_execute` as `ledgerbus replay --mode re-execute`, re-drive the same
`deadletters.redrive_named` as `ledgerbus deadletters redrive`; the store's lock keeps it consistent with the
reads the pages make."""

from __future__ import annotations

import hmac
import io
import json
import secrets
from collections.abc import Callable, Sequence
from typing import Any

from ledgerbus.bus.connection import Bus
from ledgerbus.errors import ConfigError
from ledgerbus.eventstore.base import StoredEvent
from ledgerbus.orchestrator.replaymodes import fork, re_execute
from ledgerbus.security.deadletters import redrive_named

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


#: Given a conversation's events, the (decomposer, policies) to re-run it with, as `ledgerbus fork` picks them.
Pipeline = Callable[[Sequence[StoredEvent]], tuple[Any, Any]]


def fork_payload(text: str) -> dict[str, Any] | None:
    """The edited payload a fork form sends: empty for none, else a JSON object (ConfigError otherwise)."""
    if not text.strip():
        return None
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"the payload is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ConfigError("the payload must be a JSON object")
    return body


async def fork_conversation(bus: Bus, events: Sequence[StoredEvent], at: int, payload: dict[str, Any] | None,
                            pipeline: Pipeline) -> str:
    """Run the fork live, as `ledgerbus fork` does; the new conversation's id."""
    decomposer, policies = pipeline(events)
    report = await fork(bus, events, at, payload=payload, decomposer=decomposer, policies=policies)
    return str(report.fork)


async def re_execute_step(bus: Bus, events: Sequence[StoredEvent], step: str, max_requests: int,
                          pipeline: Pipeline) -> tuple[int, bool]:
    """Run one step again live beside the recorded one, within a budget: (requests sent, budget reached)."""
    if max_requests < 1:
        raise ConfigError("re-execute sends REQUESTs for real: give a budget of at least 1")
    decomposer, policies = pipeline(events)
    report = await re_execute(bus, events, max_requests=max_requests, decomposer=decomposer, policies=policies,
                              tasks=[step])
    return report.sent, report.refused


async def redrive_letter(bus: Bus, letter_id: str) -> str:
    """Re-send a dead-lettered request as `ledgerbus deadletters redrive ID` does; the new REQUEST's id.

    Sent as the deployment user the UI connected as (security mode), else as the request's own sender."""
    ident = getattr(bus, "identity", None)
    [(_, env)] = await redrive_named(bus, [letter_id], sender=str(ident.name) if ident is not None else None)
    return env.id
