"""Writing what the orchestrator does into its conversation: fold first, then publish.

Every decision is an envelope in the ledger (an ERROR from the orchestrator with its code), so a
replay of the ledger explains every step it took.
"""

from __future__ import annotations

from typing import Any

from ledgerbus.orchestrator.clock import Clock
from ledgerbus.orchestrator.inflight import Run
from ledgerbus.orchestrator.publisher import Publisher
from ledgerbus.schemas.codes import Action, ErrorCode
from ledgerbus.schemas.envelope import Envelope, ErrorInfo, answer
from ledgerbus.tracing import instrument as tracing


class Emitter:
    def __init__(self, publisher: Publisher, clock: Clock, name: str) -> None:
        self.publisher = publisher
        self.clock = clock
        self.name = name

    async def emit(self, run: Run, env: Envelope) -> Any:
        """Fold and publish `env`; returns JetStream's PubAck (its stream sequence)."""
        # Fold before publishing: an answer can arrive before our PubAck does.
        run.fold_in(env, self.clock())
        ack = await self.publisher.publish(env)
        tracing.on_emit(env, run.root.task_id)  # decisions become span events with their codes
        return ack

    async def decision(self, run: Run, request: Envelope, code: ErrorCode, message: str, *,
                       retryable: bool = False, details: dict[str, Any] | None = None) -> None:
        """Record a decision as an ERROR from the orchestrator about `request`'s task."""
        err = ErrorInfo(code=code.value, message=message, retryable=retryable, details=details or {})
        env = answer(request, Action.ERROR, sender=self.name, error=err)
        env.recipient = self.name
        await self.emit(run, env)
