"""Requester: publishes REQUESTs and routes their answers back, with one inbox subscription per process.

Answers travel on core NATS to the requester's address (`lb.<address>.*.>`) for low latency; the
ledger holds the durable copy, which is what recovery and replay read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any

from ledgerbus.aio import within
from ledgerbus.bus.connection import Bus
from ledgerbus.bus.messages import Message
from ledgerbus.errors import AgentError, InvalidMessage, TaskTimeout
from ledgerbus.schemas.capability import CapabilityRegistry, registry as default_registry
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import Envelope, new_request

log = logging.getLogger("ledgerbus.requester")

FINAL = (Action.RESPONSE, Action.ERROR)


#: Answer ids remembered to refuse a second copy (a replay beyond the ledger's duplicate window).
SEEN_IDS = 65536


def _answers(ans: Envelope, request: Envelope) -> bool:
    """Whether `ans` answers `request`: it names it in causationId and comes from whom it was asked.
    An answer to an earlier attempt (a late one), or anyone else's answer for the task, does not."""
    return ans.causation_id == request.id and ans.sender == request.recipient and ans.attempt == request.attempt


class _Final:
    """Waits for the RESPONSE or ERROR to one attempt; an ACK or PROGRESS does not wake its waiter.

    Registered among a task's watchers beside the queues of `Requester.watch`, which take every answer.
    """

    __slots__ = ("fut", "request")

    def __init__(self, request: Envelope) -> None:
        self.fut: asyncio.Future[Envelope] = asyncio.get_running_loop().create_future()
        self.request = request

    def put_nowait(self, env: Envelope) -> None:
        if env.action in FINAL and not self.fut.done() and _answers(env, self.request):
            self.fut.set_result(env)


class Requester:
    def __init__(
        self,
        bus: Bus,
        address: str,
        *,
        registry: CapabilityRegistry | None = None,
        queue_group: str = "",
    ) -> None:
        self.bus = bus
        self.address = address
        self.registry = registry if registry is not None else default_registry
        self.queue_group = queue_group
        self._watchers: dict[str, list[asyncio.Queue[Envelope] | _Final]] = {}
        self._listeners: list[Callable[[Envelope], None]] = []
        self._sub: Any = None
        self._seen: OrderedDict[str, None] = OrderedDict()

    async def start(self) -> "Requester":
        if self._sub is None:
            self._sub = await self.bus.subscribe_inbox(self.address, self._on_msg, queue=self.queue_group)
        return self

    async def stop(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:
                pass
            self._sub = None

    def add_listener(self, fn: Callable[[Envelope], None]) -> None:
        """Called with every answer that arrives (the orchestrator folds them as they come)."""
        self._listeners.append(fn)

    async def _on_msg(self, msg: Message) -> None:
        try:
            env = self.bus.codec.decode(msg.data)
            self.bus.check_sender(env, msg.subject, msg.data, msg.headers)  # a forged answer must not settle a task
        except InvalidMessage as exc:
            # Already in the ledger (the stream captured it); nothing can be correlated, so say so once.
            log.warning("undecodable answer on %s: %s", msg.subject, exc.reason)
            return
        if env.id in self._seen:
            log.warning("ignored a second copy of %s %s on %s (a replay)", env.action.value, env.id, msg.subject)
            return
        self._seen[env.id] = None
        if len(self._seen) > SEEN_IDS:
            self._seen.popitem(last=False)
        for fn in self._listeners:
            fn(env)
        for q in self._watchers.get(env.task_id, ()):
            q.put_nowait(env)

    def watch(self, task_id: str) -> asyncio.Queue[Envelope]:
        q: asyncio.Queue[Envelope] = asyncio.Queue()
        self._watch(task_id, q)
        return q

    def _watch(self, task_id: str, watcher: asyncio.Queue[Envelope] | _Final) -> None:
        self._watchers.setdefault(task_id, []).append(watcher)

    def unwatch(self, task_id: str, q: asyncio.Queue[Envelope] | _Final) -> None:
        qs = self._watchers.get(task_id)
        if qs and q in qs:
            qs.remove(q)
            if not qs:
                del self._watchers[task_id]

    def build(self, recipient: str, capability: str, payload: Any, **kw: Any) -> Envelope:
        """A REQUEST from this requester, its payload validated against the capability when it is known."""
        cap = self.registry.find(capability)
        data = payload
        if cap is not None:
            data = cap.input.dump(cap.validate_input(cap.input.dump(payload)))
        elif not isinstance(payload, dict):
            data = default_registry.get(capability).input.dump(payload)  # raises UnknownCapability
        return new_request(sender=self.address, recipient=recipient, capability=capability, payload=data, **kw)

    async def stream(self, env: Envelope, *, timeout: float = 30.0) -> AsyncIterator[Envelope]:
        """Publish `env` and yield every answer (ACK, PROGRESS…) until the RESPONSE or ERROR."""
        q = self.watch(env.task_id)
        try:
            await self.bus.publish(env)
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TaskTimeout(f"no answer to {env.capability} from {env.recipient} within {timeout}s")
                try:
                    # asyncio.timeout rather than wait_for: no extra task per answer on the hot path.
                    async with asyncio.timeout(left):
                        ans = await q.get()
                except TimeoutError:
                    continue
                if not _answers(ans, env):
                    continue
                yield ans
                if ans.action in FINAL:
                    return
        finally:
            self.unwatch(env.task_id, q)

    async def request(
        self,
        recipient: str,
        capability: str,
        payload: Any,
        *,
        timeout: float = 30.0,
        **kw: Any,
    ) -> Envelope:
        """Send a REQUEST and return the RESPONSE envelope; an ERROR raises AgentError (alias RemoteError)."""
        env = self.build(recipient, capability, payload, **kw)
        # Not through `stream`: the ACK need not wake this task, and one timeout covers the wait.
        final = _Final(env)
        self._watch(env.task_id, final)
        try:
            await self.bus.publish(env)
            try:
                ans = await within(final.fut, timeout)
            except TimeoutError:
                raise TaskTimeout(f"no answer to {env.capability} from {env.recipient} within {timeout}s") from None
        finally:
            self.unwatch(env.task_id, final)
        if ans.action is Action.ERROR:
            err = ans.error
            raise AgentError(err.code if err else "INTERNAL", err.message if err else "",
                             retryable=bool(err and err.retryable), details=err.details if err else {},
                             sender=ans.sender)
        return ans
