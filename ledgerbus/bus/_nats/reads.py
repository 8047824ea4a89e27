"""Reading through JetStream consumers: a pull consumer and an ordered push read, with nats-py's errors
as ledgerbus's (a fetch with nothing to deliver is BusTimeout, a closed connection BusClosed)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import nats.errors

from ledgerbus.bus._nats.errors import translate, translated_errors
from ledgerbus.bus.messages import ConsumerState


def consumer_state(info: Any) -> ConsumerState:
    delivered = info.delivered
    return ConsumerState(
        name=info.name or "",
        durable=bool(info.config.durable_name) if info.config is not None else False,
        num_pending=info.num_pending or 0,
        num_ack_pending=info.num_ack_pending or 0,
        num_redelivered=info.num_redelivered or 0,
        num_waiting=info.num_waiting or 0,
        delivered_stream_seq=(delivered.stream_seq or 0) if delivered else 0,
        delivered_consumer_seq=(delivered.consumer_seq or 0) if delivered else 0,
    )


class Pull:
    """A pull consumer this connection fetches from."""

    __slots__ = ("_js", "_sub", "stream", "consumer")

    def __init__(self, js: Any, sub: Any, stream: str) -> None:
        self._js = js
        self._sub = sub
        self.stream = stream
        self.consumer: str = getattr(sub, "_consumer", "") or ""

    async def fetch(self, batch: int = 1, timeout: float | None = 5.0) -> list[Any]:
        """Up to `batch` messages; BusTimeout when none came within `timeout`."""
        try:
            return await self._sub.fetch(batch, timeout=timeout)  # type: ignore[no-any-return]
        except nats.errors.Error as exc:
            raise translate(exc, f"fetch from consumer {self.consumer}") from exc

    async def info(self) -> ConsumerState:
        with translated_errors(f"consumer info of {self.consumer}"):
            return consumer_state(await self._sub.consumer_info())

    async def close(self, *, delete: bool = False) -> None:
        """Stop fetching (and, for a consumer this read made for itself, delete it). Never raises for a
        connection already gone: the server's inactive threshold removes what is left."""
        try:
            await asyncio.shield(self._sub.unsubscribe())
        except Exception:
            pass
        if delete and self.consumer:
            try:
                await self._js.delete_consumer(self.stream, self.consumer)
            except Exception:
                pass

    # The name nats-py's subscriptions use, for callers that treat this as one.
    async def unsubscribe(self) -> None:
        await self.close()


class Ordered:
    """An ordered push read of a stream (nats-py's ordered consumer): every message once, in order."""

    __slots__ = ("_sub",)

    def __init__(self, sub: Any) -> None:
        self._sub = sub

    async def next(self, timeout: float) -> Any:
        """The next message; BusTimeout when none came within `timeout`."""
        try:
            return await self._sub.next_msg(timeout=timeout)
        except asyncio.TimeoutError as exc:  # a nats-py whose TimeoutError is asyncio's
            if isinstance(exc, nats.errors.Error):
                raise translate(exc, "ordered read") from exc
            raise translate(nats.errors.TimeoutError(), "ordered read") from exc
        except nats.errors.Error as exc:
            raise translate(exc, "ordered read") from exc

    async def info(self) -> ConsumerState:
        with translated_errors("ordered read's consumer info"):
            return consumer_state(await self._sub.consumer_info())

    async def close(self) -> None:
        try:
            await self._sub.unsubscribe()
        except Exception:
            pass


class Subscription:
    """A core NATS subscription."""

    __slots__ = ("_sub",)

    def __init__(self, sub: Any) -> None:
        self._sub = sub

    async def unsubscribe(self) -> None:
        with translated_errors("unsubscribe"):
            await self._sub.unsubscribe()


Callback = Callable[[Any], Awaitable[None]]
