"""The KV buckets ledgerbus shares between users (results by idempotency key, the agent directory).

A bucket is a JetStream stream over `$KV.<bucket>.>`. nats-py creates it with rollup headers allowed,
which lets anyone who may put one key wipe the whole bucket: one message on an allowed key with
`Nats-Rollup: all` purges every other key. Our buckets refuse rollup headers (the server answers
"rollup not permitted"), so each writer can only ever touch its own keys; removal is a delete marker
(`KV-Operation: DEL`), never `kv.purge` (which is a rollup).

Opening a bucket normally asks for its stream info, whose `subjects_filter` lists every key. A user
that may not see other users' keys (an agent) binds to the bucket without asking (`bind_only`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import nats.errors
from nats.js import api
from nats.js.errors import BadRequestError, KeyNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from ledgerbus.bus._nats.errors import translated_errors
from ledgerbus.bus.messages import KVEntry

log = logging.getLogger("ledgerbus.buckets")

KV_STREAM = "KV_{bucket}"
KV_PRE = "$KV.{bucket}."


def stream_config(bucket: str, *, ttl: float | None, direct: bool, history: int = 1) -> api.StreamConfig:
    """The stream of a KV bucket as nats-py makes it, but without rollups (pure)."""
    return api.StreamConfig(
        name=KV_STREAM.format(bucket=bucket),
        subjects=[f"$KV.{bucket}.>"],
        allow_direct=direct,
        allow_rollup_hdrs=False,
        allow_msg_ttl=True,
        deny_delete=True,
        discard=api.DiscardPolicy.NEW,
        duplicate_window=min(ttl, 120.0) if ttl else 120.0,
        max_age=ttl,
        max_consumers=-1,
        max_msgs=-1,
        max_msgs_per_subject=history,
    )


def _bind(js: Any, bucket: str, *, direct: bool) -> KeyValue:
    """The bucket, without a round trip (and without stream info): it must exist."""
    return KeyValue(name=bucket, stream=KV_STREAM.format(bucket=bucket), pre=KV_PRE.format(bucket=bucket),
                    js=js, direct=direct)


async def ensure(js: Any, bucket: str, *, ttl: float | None, direct: bool, history: int = 1) -> KeyValue:
    """Open the bucket, creating it without rollups; an existing one that allows them is updated if we may."""
    cfg = stream_config(bucket, ttl=ttl, direct=direct, history=history)
    try:
        info = await js.stream_info(cfg.name)
    except NotFoundError:
        try:
            info = await js.add_stream(cfg)
        except BadRequestError:  # created concurrently by another process
            info = await js.stream_info(cfg.name)
    if info.config.allow_rollup_hdrs:
        try:
            info = await js.update_stream(info.config.evolve(allow_rollup_hdrs=False))
        except Exception as exc:  # not ours to change (a client user): say so, keep working
            log.warning("bucket %s allows rollup headers (any writer can purge it) and could not be "
                        "updated: %s", bucket, exc)
    return _bind(js, bucket, direct=bool(info.config.allow_direct))


async def open_bucket(js: Any, bucket: str, *, ttl: float | None, direct: bool, bind_only: bool) -> "Bucket":
    """The bucket as the user may open it: bound without stream info when the user may not read it."""
    with translated_errors(f"open bucket {bucket}"):
        kv = _bind(js, bucket, direct=direct) if bind_only else await ensure(js, bucket, ttl=ttl, direct=direct)
    return Bucket(js, kv)


_KV_OP = "KV-Operation"
_REMOVED = ("DEL", "PURGE")
_SEQUENCE = "Nats-Sequence"
_EXPECTED = api.Header.EXPECTED_LAST_SUBJECT_SEQUENCE


class Bucket:
    """A KV bucket behind ledgerbus's own calls, with nats-py's errors as ledgerbus's (NotFound,
    WrongRevision, Refused...).

    Two fast paths stand on nats-py's KeyValue fields (its subject prefix, stream and direct flag, read
    once): a lookup is a direct get on the bus's shared reply inbox rather than a request per get, and a
    conditional write or a pipelined put is a JetStream publish on the connection's append pipeline.
    Without those fields (another nats-py, or LEDGERBUS_NATS_PLAIN) the public KeyValue calls do it.
    """

    def __init__(self, js: Any, kv: KeyValue) -> None:
        from ledgerbus.bus._nats.appends import PipelinedJetStream
        from ledgerbus.bus._nats.compat import PLAIN

        self._js = js
        self._kv = kv
        self.name: str = kv._name
        self.stream: str = kv._stream
        self.prefix: str = kv._pre  # "$KV.<bucket>." (with any API prefix)
        fast = not PLAIN and isinstance(js, PipelinedJetStream)
        self._pre: str | None = self.prefix if fast and isinstance(self.prefix, str) else None
        self._direct_stream: str | None = (self.stream if self._pre is not None and isinstance(self.stream, str)
                                           and getattr(kv, "_direct", False) else None)

    async def get(self, key: str) -> KVEntry | None:
        """The entry at `key`, None when there is none (never written, deleted or purged)."""
        with translated_errors(f"get {key} from bucket {self.name}"):
            try:
                entry = await self._kv.get(key)
            except (KeyNotFoundError, NotFoundError):
                return None
        return KVEntry(key, entry.value or b"", int(entry.revision or 0))

    async def read(self, key: str) -> tuple[bytes | None, int]:
        """`key`'s value and revision; (None, revision of the delete marker or 0) when it has none."""
        if self._direct_stream is not None:
            with translated_errors(f"get {key} from bucket {self.name}"):
                msg = await self._js.direct_get_last(self._direct_stream, f"{self._pre}{key}")
            if msg is None:
                return None, 0
            headers = msg.headers or {}
            rev = int(headers.get(_SEQUENCE, 0) or 0)
            if headers.get(_KV_OP) in _REMOVED or not msg.data:
                return None, rev
            return msg.data, rev
        entry = await self.get(key)  # nats-py's create() finds a delete marker's revision itself
        return (entry.value or None, entry.revision) if entry is not None else (None, 0)

    async def create(self, key: str, value: bytes) -> int:
        """Write `key` only if it has no value; its revision. WrongRevision when it has one."""
        with translated_errors(f"create {key} in bucket {self.name}"):
            return int(await self._kv.create(key, value))

    async def update(self, key: str, value: bytes, *, last: int) -> int:
        """Write `key` only while it is at revision `last`; its new revision. WrongRevision otherwise."""
        with translated_errors(f"update {key} in bucket {self.name}"):
            return int(await self._kv.update(key, value, last=last))

    async def write_if(self, key: str, value: bytes, last: int) -> int:
        """Write `key` only while it is at revision `last` (0: no entry yet, or a delete marker's revision)."""
        if self._pre is None:
            return await (self.update(key, value, last=last) if last else self.create(key, value))
        with translated_errors(f"write {key} in bucket {self.name}"):
            ack = await self._js.publish(f"{self._pre}{key}", value, headers={_EXPECTED: str(last)})
        return int(ack.seq)

    async def put(self, key: str, value: bytes) -> int:
        with translated_errors(f"put {key} in bucket {self.name}"):
            return int(await self._kv.put(key, value))

    async def put_async(self, key: str, value: bytes) -> "asyncio.Future[Any]":
        """Pipelined put: on the wire now, the future resolves once the value is stored.

        A KV put is a JetStream publish on the bucket's subject, so it shares the connection's async
        PubAck pipeline with the envelope it records (one round trip for both, not two)."""
        if self._pre is None:
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            fut.set_result(await self.put(key, value))
            return fut
        from ledgerbus.bus._nats.errors import translated

        with translated_errors(f"put {key} in bucket {self.name}"):
            return translated(await self._js.publish_async(f"{self._pre}{key}", value), f"{self._pre}{key}")

    async def delete(self, key: str, *, last: int | None = None) -> None:
        """A delete marker at `key` (never a purge: a rollup, which our buckets refuse); with `last`, only
        while the entry is at that revision (WrongRevision otherwise)."""
        with translated_errors(f"delete {key} from bucket {self.name}"):
            await self._kv.delete(key, last=last)

    async def latest(self) -> list[tuple[str, bytes]]:
        """(key, value) of every live key, read from the bucket's stream: the latest entry per key.

        Not `kv.keys()`: nats-py's watcher can signal "initial values done" before values it has already
        received, so it sometimes lists nothing while keys are live. A pull consumer created at the
        latest entry per key knows exactly how many it has to deliver."""
        out: list[tuple[str, bytes]] = []
        with translated_errors(f"read bucket {self.name}"):
            sub = await self._js.pull_subscribe(
                f"{self.prefix}>", stream=self.stream,
                config=api.ConsumerConfig(deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT,
                                          ack_policy=api.AckPolicy.NONE, inactive_threshold=30.0,
                                          mem_storage=True),
            )
        try:
            left = (await sub.consumer_info()).num_pending or 0
            while left > 0:
                try:
                    msgs = await sub.fetch(min(left, 256), timeout=2.0)
                except nats.errors.TimeoutError:
                    break
                left -= len(msgs)
                for msg in msgs:
                    if msg.headers and msg.headers.get(_KV_OP) in _REMOVED:
                        continue
                    if msg.data:
                        out.append((msg.subject[len(self.prefix):], msg.data))
        except nats.errors.Error as exc:
            from ledgerbus.bus._nats.errors import translate

            raise translate(exc, f"read bucket {self.name}") from exc
        finally:
            try:
                await sub.unsubscribe()
            except Exception:
                pass
        return out
