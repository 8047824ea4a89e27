"""Claims and durable results by requester and idempotency key (JetStream KV `LB_RESULTS`).

An entry goes through two states: a `Claim` while a handler works on the key (created before the handler
runs, renewed while it lives, deleted when it ends without a result), then the `Recorded` result that
answers every later request for the key. A redelivered, retried or concurrent duplicate finds one or
the other and never runs the handler a second time.

A key belongs to one requester identity: the KV key is `<agent>.<requester>.<hash of the idempotency key>`,
so a request from another sender with the same key has an entry of its own and can neither read nor plant
another requester's result. Durable beyond JetStream's duplicate window: the bucket keeps entries for
`max_age` (default 7 days).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

import msgspec

from ledgerbus.bus.connection import Bucket, Bus
from ledgerbus.errors import WrongRevision

log = logging.getLogger("ledgerbus.agent")

BUCKET = "LB_RESULTS"


class Recorded(msgspec.Struct, frozen=True, tag="result", tag_field="kind"):
    """The answer recorded for an idempotency key: the RESPONSE payload and the envelope that carried it."""

    payload: dict[str, Any]
    response_id: str
    task_id: str
    attempt: int


class Claim(msgspec.Struct, frozen=True, tag="claim", tag_field="kind"):
    """A handler is working on the key: which instance, and how long its claim lasts without a renewal."""

    instance: str
    lease: float
    task_id: str
    attempt: int


Entry = Recorded | Claim

_enc = msgspec.json.Encoder()
_dec: msgspec.json.Decoder[Entry] = msgspec.json.Decoder(Entry)  # type: ignore[arg-type]


def slot(agent: str, requester: str, key: str) -> str:
    """The KV key of `key` asked of `agent` by `requester` (an address: already a valid KV token)."""
    # KV keys allow a narrow alphabet; idempotency keys are arbitrary strings.
    return f"{agent}.{requester}.{hashlib.sha256(key.encode()).hexdigest()[:40]}"


def wrong_last(exc: BaseException) -> bool:
    """True when a conditional write was refused because the entry is no longer at the revision named."""
    return isinstance(exc, WrongRevision)


def _decode(data: bytes, where: str) -> Entry | None:
    try:
        return _dec.decode(data)
    except msgspec.DecodeError as exc:  # not ours (a foreign writer, an older layout): as if free
        log.warning("results entry %s unreadable, taken as free: %s", where, exc)
        return None


class ResultStore:
    def __init__(self, bus: Bus, *, max_age: float = 7 * 24 * 3600) -> None:
        self.bus = bus
        self.max_age = max_age
        self._kv: Bucket | None = None

    async def _bucket(self) -> Bucket:
        if self._kv is None:
            name = self.bus.subjects.bucket(BUCKET)
            # direct=True: a lookup is answered by the stream itself (DIRECT.GET), not queued behind the
            # JetStream API — it is on every step's path.
            self._kv = await self.bus.bucket(name, ttl=self.max_age, direct=True)
        return self._kv

    async def read(self, key: str) -> tuple[Entry | None, int]:
        """The entry at KV key `key` and its revision; (None, revision of the delete marker or 0) when free."""
        kv = self._kv or await self._bucket()  # no coroutine per lookup once the bucket is known
        data, rev = await kv.read(key)
        return (_decode(data, key) if data else None), rev

    async def get(self, agent: str, requester: str, key: str) -> Recorded | None:
        """The result recorded for idempotency key `key` asked of `agent` by `requester`, if any."""
        entry, _ = await self.read(slot(agent, requester, key))
        return entry if isinstance(entry, Recorded) else None

    async def claim(self, key: str, claim: Claim, last: int = 0) -> int | None:
        """Write `claim` at `key` if the entry is still at revision `last` (0: none); its revision, or None
        when another writer got there first. Also a renewal: `last` is then the claimant's own revision."""
        kv = self._kv or await self._bucket()
        try:
            return await kv.write_if(key, _enc.encode(claim), last)
        except WrongRevision:
            return None

    async def release(self, key: str, revision: int) -> None:
        """Give up a claim (the handler ended without a result): a duplicate may then claim the key.
        Only while the entry is still that claim: a result recorded since, or a claim taken over, stays."""
        kv = self._kv or await self._bucket()
        try:
            await kv.delete(key, last=revision)
        except WrongRevision:
            pass

    async def put(self, key: str, rec: Recorded) -> None:
        kv = await self._bucket()
        await kv.put(key, _enc.encode(rec))

    async def put_async(self, key: str, rec: Recorded) -> "asyncio.Future[Any]":
        """Pipelined put: on the wire now, the future resolves once the record is stored (Bucket.put_async:
        it shares the connection's PubAck pipeline with the envelope it records)."""
        kv = self._kv or await self._bucket()
        return await kv.put_async(key, _enc.encode(rec))
