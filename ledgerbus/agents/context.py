"""What a handler gets besides its input: the request, progress reporting, a span, sub-requests."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from ledgerbus.schemas.envelope import Envelope

if TYPE_CHECKING:
    from opentelemetry.trace import Span


class Context:
    def __init__(
        self,
        request: Envelope,
        *,
        agent: str,
        instance: str,
        progress: Callable[[dict[str, Any]], Awaitable[None]],
        requester: Callable[..., Awaitable[Any]] | None = None,
        span: "Span | None" = None,
    ) -> None:
        self.request = request
        self.agent = agent
        self.instance = instance
        self._progress = progress
        self._requester = requester
        self.span: Span = span or trace.get_current_span()
        self.log = logging.getLogger(f"ledgerbus.agent.{agent}")

    @property
    def conversation_id(self) -> str:
        return self.request.conversation_id

    @property
    def task_id(self) -> str:
        return self.request.task_id

    @property
    def attempt(self) -> int:
        return self.request.attempt

    @property
    def idempotency_key(self) -> str:
        return self.request.key

    async def progress(self, payload: dict[str, Any] | None = None, **fields: Any) -> None:
        """Publish a PROGRESS envelope (a heartbeat the orchestrator sees) and extend the JetStream AckWait."""
        await self._progress({**(payload or {}), **fields})

    async def request(self, recipient: str, capability: str, payload: Any, *, timeout: float = 30.0) -> Any:
        """Ask another agent, in the same conversation and ledger; returns its RESPONSE payload."""
        if self._requester is None:
            from ledgerbus.errors import ConfigError

            raise ConfigError("this context cannot make sub-requests")
        return await self._requester(recipient, capability, payload, timeout=timeout, parent=self.request)
