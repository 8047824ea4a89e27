"""Answering a message that is not a valid envelope: an ERROR in the ledger, addressed back when possible."""

from __future__ import annotations

import logging
from typing import Any

from ledgerbus.bus.connection import Bus
from ledgerbus.errors import InvalidMessage
from ledgerbus.ids import now_ms, uuid7
from ledgerbus.schemas.codec import salvage_ids
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import Envelope, ErrorInfo, is_address, is_token

log = logging.getLogger("ledgerbus.agent")


async def reject_raw(bus: Bus, msg: Any, exc: InvalidMessage, *, sender: str) -> None:
    """Record an ERROR for an undecodable message, addressed to whoever we can tell sent it, then term it.

    Only ids that are well-formed subject tokens are salvaged: a broken message must not be able to steer
    its error anywhere but to a valid address.
    """
    ids = salvage_ids(msg.data, max_bytes=bus.codec.max_bytes)
    parts = msg.subject.split(".")
    conv = ids.get("conversationId") or (parts[3] if len(parts) == 4 and is_token(parts[3]) else "unknown")
    to = ids.get("replyTo") or ids.get("sender") or (msg.headers or {}).get("Lb-Sender", "")
    if not is_address(to):
        to = "unknown"
    eid = uuid7()
    env = Envelope(
        id=eid,
        conversation_id=conv,
        task_id=ids.get("taskId") or eid,
        causation_id=ids.get("id"),
        sender=sender,
        recipient=to,
        action=Action.ERROR,
        capability=ids.get("capability", "unknown"),
        timestamp=now_ms(),
        error=ErrorInfo(code=exc.code, message=exc.reason,
                        details={k: v for k, v in {"path": exc.path, **exc.details}.items() if v is not None}),
    )
    try:
        await bus.publish(env)
    except Exception as pub_exc:
        log.warning("%s: could not record the rejection: %s", sender, pub_exc)
    await msg.term()  # never redeliver what can never decode
