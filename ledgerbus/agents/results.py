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
import nats.js.errors
from nats.js import api
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError

from ledgerbus.bus import buckets
from ledgerbus.bus.connection import Bus

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

_KV_OP = "KV-Operation"
_REMOVED = ("DEL", "PURGE")
_SEQUENCE = "Nats-Sequence"
_EXPECTED = api.Header.EXPECTED_LAST_SUBJECT_SEQUENCE
# JSStreamWrongLastSequenceErrF and its constant twin: the entry changed since the revision named.
_WRONG_LAST = (10071, 10164)
_enc = msgspec.json.Encoder()
_dec: msgspec.json.Decoder[Entry] = msgspec.json.Decoder(Entry)  # type: ignore[arg-type]


def slot(agent: str, requester: str, key: str) -> str:
    """The KV key of `key` asked of `agent` by `requester` (an address: already a valid KV token)."""
    # KV keys allow a narrow alphabet; idempotency keys are arbitrary strings.
    return f"{agent}.{requester}.{hashlib.sha256(key.encode()).hexdigest()[:40]}"


def wrong_last(exc: BaseException) -> bool:
    """True when a conditional write was refused because the entry is no longer at the revision named."""
    return isinstance(exc, KeyWrongLastSequenceError) or (
        isinstance(exc, nats.js.errors.APIError) and exc.err_code in _WRONG_LAST)


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
        self._kv: Any = None
        # The bucket's subject prefix and (when it allows direct gets) its stream, read once from nats-py's
        # private fields; None when a nats-py without them (or a bucket without direct gets) takes the public path.
        self._pre: str | None = None
        self._direct_stream: str | None = None

    async def _bucket(self) -> Any:
        if self._kv is None:
            name = self.bus.subjects.bucket(BUCKET)
            # direct=True: a lookup is answered by the stream itself (DIRECT.GET), not queued behind the
            # JetStream API — it is on every step's path.
            self._kv = await buckets.open_bucket(self.bus, name, ttl=self.max_age, direct=True)
            pre, stream = getattr(self._kv, "_pre", None), getattr(self._kv, "_stream", None)
            self._pre = pre if isinstance(pre, str) else None
            if self._pre is not None and isinstance(stream, str) and getattr(self._kv, "_direct", False):
                self._direct_stream = stream
        return self._kv

    async def read(self, key: str) -> tuple[Entry | None, int]:
        """The entry at KV key `key` and its revision; (None, revision of the delete marker or 0) when free."""
        kv = self._kv or await self._bucket()  # no coroutine per lookup once the bucket is known
        # A direct get on the bus's shared reply inbox, not nats-py's request per get.
        if self._direct_stream is not None:
            msg = await self.bus.js.direct_get_last(self._direct_stream, f"{self._pre}{key}")
            if msg is None:
                return None, 0
            headers = msg.headers or {}
            rev = int(headers.get(_SEQUENCE, 0) or 0)
            if headers.get(_KV_OP) in _REMOVED or not msg.data:
                return None, rev
            return _decode(msg.data, key), rev
        try:
            entry = await kv.get(key)
        except (KeyNotFoundError, NotFoundError):
            return None, 0  # nats-py's create() below finds a delete marker's revision itself
        return (_decode(entry.value, key) if entry.value else None), int(entry.revision or 0)

    async def get(self, agent: str, requester: str, key: str) -> Recorded | None:
        """The result recorded for idempotency key `key` asked of `agent` by `requester`, if any."""
        entry, _ = await self.read(slot(agent, requester, key))
        return entry if isinstance(entry, Recorded) else None

    async def claim(self, key: str, claim: Claim, last: int = 0) -> int | None:
        """Write `claim` at `key` if the entry is still at revision `last` (0: none); its revision, or None
        when another writer got there first. Also a renewal: `last` is then the claimant's own revision."""
        kv = self._kv or await self._bucket()
        try:
            if self._pre is None:
                return int(await (kv.update(key, _enc.encode(claim), last=last) if last
                                   else kv.create(key, _enc.encode(claim))))
            ack = await self.bus.js.publish(f"{self._pre}{key}", _enc.encode(claim), headers={_EXPECTED: str(last)})
        except Exception as exc:
            if wrong_last(exc):
                return None
            raise
        return int(ack.seq)

    async def release(self, key: str, revision: int) -> None:
        """Give up a claim (the handler ended without a result): a duplicate may then claim the key.
        Only while the entry is still that claim: a result recorded since, or a claim taken over, stays."""
        kv = self._kv or await self._bucket()
        try:
            await kv.delete(key, last=revision)
        except Exception as exc:
            if not wrong_last(exc):
                raise

    async def put(self, key: str, rec: Recorded) -> None:
        kv = await self._bucket()
        await kv.put(key, _enc.encode(rec))

    async def put_async(self, key: str, rec: Recorded) -> "asyncio.Future[Any]":
        """Pipelined put: on the wire now, the future resolves once the record is stored.

        A KV put is a JetStream publish on the bucket's subject, so it can share the connection's
        async PubAck pipeline with the envelope it records (one round trip for both, not two).
        """
        kv = self._kv or await self._bucket()
        pre = self._pre  # nats-py's "$KV.<bucket>." (with any API prefix)
        if pre is None:
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            fut.set_result(await kv.put(key, _enc.encode(rec)))
            return fut
        return await self.bus.js.publish_async(f"{pre}{key}", _enc.encode(rec))
