"""What a handler gets besides its input: the request, progress reporting, a span, sub-requests."""

from __future__ import annotations

import hashlib
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from opentelemetry import trace

from ledgerbus.errors import ConfigError, InvalidMessage, TaskTimeout
from ledgerbus.ids import now_ms
from ledgerbus.schemas.envelope import Envelope

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from ledgerbus.bus.connection import Bus
    from ledgerbus.bus.requester import Requester

T = TypeVar("T")

#: (recipient, capability, payload, *, timeout, parent, key) -> the RESPONSE envelope
SubRequest = Callable[..., Awaitable[Envelope]]


class Context:
    def __init__(
        self,
        request: Envelope,
        *,
        agent: str,
        instance: str,
        progress: Callable[[dict[str, Any]], Awaitable[None]],
        requester: SubRequest | None = None,
        span: "Span | None" = None,
    ) -> None:
        # The envelope being handled. Not `self.request`: that name is the method that asks other agents.
        self.envelope = request
        self.agent = agent
        self.instance = instance
        self._progress = progress
        self._requester = requester
        self._asked = 0
        self.span: Span = span or trace.get_current_span()
        self.log = logging.getLogger(f"ledgerbus.agent.{agent}")

    @property
    def conversation_id(self) -> str:
        return self.envelope.conversation_id

    @property
    def task_id(self) -> str:
        return self.envelope.task_id

    @property
    def attempt(self) -> int:
        return self.envelope.attempt

    @property
    def idempotency_key(self) -> str:
        return self.envelope.key

    async def progress(self, payload: dict[str, Any] | None = None, **fields: Any) -> None:
        """Publish a PROGRESS envelope (a heartbeat the orchestrator sees) and extend the JetStream AckWait."""
        await self._progress({**(payload or {}), **fields})

    async def request(self, recipient: str, capability: str, payload: Any, *, timeout: float = 30.0,
                      output: type[T] | None = None) -> Any:
        """Ask another agent and return its RESPONSE payload (converted to `output` when given).

        The sub-request is part of this conversation in the same ledger: same conversationId, its
        causationId is the request being handled, and it inherits the deadline. Its idempotency key
        derives from this task's key and the call's position, so a retried task asks again with the
        same keys and gets the recorded answers instead of repeating the work. An ERROR answer raises
        AgentError (alias RemoteError); no answer in time raises TaskTimeout.
        """
        if self._requester is None:
            raise ConfigError("this context cannot make sub-requests")
        self._asked += 1
        key = sub_key(self.envelope.key, self._asked, capability)
        if self.envelope.deadline is not None:
            left = (self.envelope.deadline - now_ms()) / 1000
            if left <= 0:
                raise TaskTimeout(f"no time left for {capability}: the request's deadline has passed")
            timeout = min(timeout, left)
        resp = await self._requester(recipient, capability, payload, timeout=timeout, parent=self.envelope, key=key)
        if output is None:
            return resp.payload
        try:
            return msgspec.convert(resp.payload, output)
        except msgspec.ValidationError as exc:
            raise InvalidMessage(f"{capability} answered a payload that is not a {output.__name__}: {exc}") from None


def sub_key(parent_key: str, n: int, capability: str) -> str:
    key = f"{parent_key}/{n}:{capability}"
    # Idempotency keys are capped at 256 characters by the envelope schema.
    return key if len(key) <= 256 else hashlib.sha256(key.encode()).hexdigest()


class SubRequester:
    """Sends an agent's sub-requests and routes their answers back: one inbox subscription per agent type
    and connection, shared by every instance in the process (each waits only for its own task ids)."""

    def __init__(self, bus: "Bus", agent: str) -> None:
        self.bus = bus
        self.agent = agent
        self._requester: Requester | None = None

    async def _started(self) -> "Requester":
        if self._requester is None:
            from ledgerbus.bus.requester import Requester

            requester = Requester(self.bus, self.agent)
            await requester.start()
            if self._requester is None:
                self._requester = requester
            else:  # another task started one meanwhile
                await requester.stop()
        return self._requester

    async def __call__(self, recipient: str, capability: str, payload: Any, *, timeout: float, parent: Envelope,
                       key: str) -> Envelope:
        requester = await self._started()
        start = time.monotonic()
        resp = await requester.request(
            recipient, capability, payload, timeout=timeout,
            conversation_id=parent.conversation_id, causation_id=parent.id,
            deadline=parent.deadline, idempotency_key=key,
        )
        logging.getLogger(f"ledgerbus.agent.{self.agent}").debug(
            "%s answered %s in %.0f ms", recipient, capability, (time.monotonic() - start) * 1000)
        return resp


_by_bus: "weakref.WeakKeyDictionary[Any, dict[str, SubRequester]]" = weakref.WeakKeyDictionary()


def sub_requester(bus: "Bus", agent: str) -> SubRequester:
    """The SubRequester of `agent` on `bus` (created on first use; its subscription ends with the connection)."""
    per_bus = _by_bus.setdefault(bus, {})
    if agent not in per_bus:
        per_bus[agent] = SubRequester(bus, agent)
    return per_bus[agent]
