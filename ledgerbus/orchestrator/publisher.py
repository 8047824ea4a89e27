"""How the orchestrator's envelopes reach the ledger, and whether its own connection is in trouble.

Every line where the orchestrator's conductor and supervisor touch the bus lives here, so the rest
of them is written against this object (and a replay mode or a test can hand them another one).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ledgerbus.bus.connection import Bus
from ledgerbus.errors import ConnectionClosed, LedgerbusError, PublishError
from ledgerbus.schemas.envelope import Envelope

log = logging.getLogger("ledgerbus.orchestrator")


class Publisher:
    """Publishes the orchestrator's envelopes, riding out a server restart or a leader election."""

    def __init__(self, bus: Bus, name: str, *, patience: float = 60.0) -> None:
        self.bus = bus
        self.name = name
        self.patience = patience  # seconds an envelope is re-published while the server is unreachable

    async def publish(self, env: Envelope) -> Any:
        """Publish until JetStream has stored it; returns JetStream's PubAck (its stream sequence).

        Already folded, the envelope must reach the ledger or the live state and the replay would
        disagree. Publishing the same envelope id again is safe: JetStream deduplicates it.
        """
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.patience
        delay = 0.1
        while True:
            try:
                # Our own root REQUEST is not for anyone else to take: it creates no consumer for this name.
                return await self.bus.publish(env, ensure_consumer=env.recipient != self.name)
            except Exception as exc:
                if not _may_pass(exc):
                    raise
                self.bus.note_trouble()
                if loop.time() + delay > give_up:
                    raise
                log.warning("publish of %s %s failed (%s); retrying in %.1fs", env.action.value, env.id,
                            exc or type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def in_trouble(self, window: float) -> bool:
        """Whether our own connection is down, or was in trouble within the last `window` seconds."""
        return not self.bus.is_connected or time.monotonic() - self.bus.trouble_at < window


def _may_pass(exc: Exception) -> bool:
    """Whether a failed publish is worth repeating: a timeout, an outage, a leader election may pass;
    an envelope the codec refuses (too large…) or a connection closed by us will not."""
    if isinstance(exc, ConnectionClosed):
        return False
    return isinstance(exc, PublishError) or not isinstance(exc, LedgerbusError)
