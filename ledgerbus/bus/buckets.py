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

import logging
from typing import Any

from nats.js import api
from nats.js.errors import BadRequestError, NotFoundError
from nats.js.kv import KeyValue

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


def bind(js: Any, bucket: str, *, direct: bool) -> KeyValue:
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
    return bind(js, bucket, direct=bool(info.config.allow_direct))


async def open_bucket(bus: Any, bucket: str, *, ttl: float | None, direct: bool) -> KeyValue:
    """The bucket as `bus`'s user may open it: bound without stream info when the user may not read it."""
    if getattr(bus, "bind_only", False):
        return bind(bus.js, bucket, direct=direct)
    return await ensure(bus.js, bucket, ttl=ttl, direct=direct)
