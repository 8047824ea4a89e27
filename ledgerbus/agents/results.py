"""Durable results by idempotency key (JetStream KV), so a redelivered or retried task that already
completed gets its recorded answer back instead of running the handler again.

Durable beyond JetStream's duplicate window: the KV bucket keeps entries for `max_age` (default 7 days).
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import msgspec
from nats.js.errors import KeyNotFoundError, NotFoundError

from ledgerbus.bus import buckets
from ledgerbus.bus.connection import Bus

BUCKET = "LB_RESULTS"


class Recorded(msgspec.Struct, frozen=True):
    """The answer recorded for an idempotency key: the RESPONSE payload and the envelope that carried it."""

    payload: dict[str, Any]
    response_id: str
    task_id: str
    attempt: int


_KV_OP = "KV-Operation"
_REMOVED = ("DEL", "PURGE")
_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(Recorded)


def _kv_key(agent: str, key: str) -> str:
    # KV keys allow a narrow alphabet; idempotency keys are arbitrary strings.
    return f"{agent}.{hashlib.sha256(key.encode()).hexdigest()[:40]}"


class ResultStore:
    def __init__(self, bus: Bus, *, max_age: float = 7 * 24 * 3600) -> None:
        self.bus = bus
        self.max_age = max_age
        self._kv: Any = None
        # The bucket's subject prefix and (when it allows direct gets) its stream, read once from nats-py's
        # private fields; None when a nats-py without them (or a bucket without direct gets) takes the public path.
        self._pre: str | None = None
        self._direct_stream: str | None = None

    async def _bucket(self) -> Any:
        if self._kv is None:
            name = BUCKET if self.bus.subjects.prefix == "lb" else f"{BUCKET}_{self.bus.subjects.prefix.upper()}"
            # direct=True: a lookup is answered by the stream itself (DIRECT.GET), not queued behind the
            # JetStream API — it is on every step's path.
            self._kv = await buckets.open_bucket(self.bus, name, ttl=self.max_age, direct=True)
            pre, stream = getattr(self._kv, "_pre", None), getattr(self._kv, "_stream", None)
            self._pre = pre if isinstance(pre, str) else None
            if self._pre is not None and isinstance(stream, str) and getattr(self._kv, "_direct", False):
                self._direct_stream = stream
        return self._kv

    async def get(self, agent: str, key: str) -> Recorded | None:
        kv = self._kv or await self._bucket()  # no coroutine per lookup once the bucket is known
        # On every step's path: a direct get on the bus's shared reply inbox, not nats-py's request per get.
        if self._direct_stream is not None:
            msg = await self.bus.js.direct_get_last(self._direct_stream, f"{self._pre}{_kv_key(agent, key)}")
            if msg is None or (msg.headers and msg.headers.get(_KV_OP) in _REMOVED) or not msg.data:
                return None
            return _dec.decode(msg.data)
        try:
            entry = await kv.get(_kv_key(agent, key))
        except (KeyNotFoundError, NotFoundError):
            return None
        return _dec.decode(entry.value) if entry.value else None

    async def put(self, agent: str, key: str, rec: Recorded) -> None:
        kv = await self._bucket()
        await kv.put(_kv_key(agent, key), _enc.encode(rec))

    async def put_async(self, agent: str, key: str, rec: Recorded) -> "asyncio.Future[Any]":
        """Pipelined put: on the wire now, the future resolves once the record is stored.

        A KV put is a JetStream publish on the bucket's subject, so it can share the connection's
        async PubAck pipeline with the envelope it records (one round trip for both, not two).
        """
        kv = self._kv or await self._bucket()
        pre = self._pre  # nats-py's "$KV.<bucket>." (with any API prefix)
        if pre is None:
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            fut.set_result(await kv.put(_kv_key(agent, key), _enc.encode(rec)))
            return fut
        return await self.bus.js.publish_async(f"{pre}{_kv_key(agent, key)}", _enc.encode(rec))
