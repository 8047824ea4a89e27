"""JetStream management and reads by position, as `Bus` offers them: nats-py's calls, ledgerbus's types
and errors."""

from __future__ import annotations

import json
import logging
from typing import Any

from nats.js import api
from nats.js.errors import NotFoundError

from ledgerbus.bus._nats.config import consumer_config
from ledgerbus.bus._nats.errors import translated_errors
from ledgerbus.bus._nats.reads import Callback, Ordered, Pull, Subscription, consumer_state
from ledgerbus.bus.messages import ConsumerState, StoredMsg, StreamInfo, datetime_ms
from ledgerbus.bus.streams import ConsumerSpec

log = logging.getLogger("ledgerbus.bus")


def stream_info_of(info: Any) -> StreamInfo:
    cfg, st = info.config, info.state
    return StreamInfo(
        name=cfg.name or "",
        messages=st.messages or 0,
        bytes=st.bytes or 0,
        first_seq=st.first_seq or 0,
        last_seq=st.last_seq or 0,
        consumer_count=st.consumer_count or 0,
        max_age=cfg.max_age if cfg.max_age else None,
        max_bytes=cfg.max_bytes if cfg.max_bytes and cfg.max_bytes > 0 else None,
        subjects=dict(st.subjects or {}),
    )


async def stream_info(js: Any, stream: str, *, subjects_filter: str | None = None) -> StreamInfo:
    with translated_errors(f"stream info of {stream}"):
        return stream_info_of(await js.stream_info(stream, subjects_filter=subjects_filter))


async def ensure_stream(js: Any, cfg: api.StreamConfig, *, update: bool) -> StreamInfo:
    """Create the stream, or bring an existing one's retention to `cfg` (`update=False`: only create)."""
    with translated_errors(f"create stream {cfg.name}"):
        try:
            info = await js.stream_info(cfg.name)
        except NotFoundError:
            info = await js.add_stream(cfg)
        else:
            cur = info.config
            if update and (cur.max_age or 0, cur.max_bytes or -1, cur.duplicate_window) != (
                cfg.max_age,
                cfg.max_bytes,
                cfg.duplicate_window,
            ):
                info = await js.update_stream(cfg)
    return stream_info_of(info)


async def set_retention(js: Any, stream: str, *, max_age: float | None, max_bytes: int | None) -> StreamInfo:
    """Set the stream's max age / size (None leaves a value as it is; 0 removes the limit)."""
    with translated_errors(f"set the retention of {stream}"):
        info = await js.stream_info(stream)
        if max_age is None and max_bytes is None:
            return stream_info_of(info)
        cfg = info.config
        if max_age is not None:
            cfg.max_age = max_age
        if max_bytes is not None:
            cfg.max_bytes = max_bytes or -1
        return stream_info_of(await js.update_stream(cfg))


def _stored(raw: Any) -> StoredMsg:
    return StoredMsg(seq=int(raw.seq or 0), subject=raw.subject or "", data=raw.data,
                     headers=raw.headers, stored_ms=datetime_ms(raw.time))


async def get_msg(js: Any, stream: str, seq: int) -> StoredMsg:
    """The message at stream position `seq`; NotFound when the stream no longer (or never) held it."""
    with translated_errors(f"get message {seq} of {stream}"):
        return _stored(await js.get_msg(stream, seq))


async def last_msg(js: Any, stream: str, subject: str) -> StoredMsg:
    """The last message on `subject`; NotFound when there is none."""
    with translated_errors(f"get the last message on {subject}"):
        return _stored(await js.get_last_msg(stream, subject))


async def consumer_info(js: Any, stream: str, name: str, *, timeout: float | None = None) -> ConsumerState:
    with translated_errors(f"consumer info of {name}"):
        return consumer_state(await js.consumer_info(stream, name, timeout=timeout))


async def consumers(js: Any, stream: str) -> list[ConsumerState]:
    with translated_errors(f"consumers of {stream}"):
        return [consumer_state(c) for c in await js.consumers_info(stream)]


async def add_consumer(js: Any, stream: str, spec: ConsumerSpec) -> ConsumerState:
    with translated_errors(f"create consumer {spec.durable_name or spec.name or ''} on {stream}"):
        return consumer_state(await js.add_consumer(stream, consumer_config(spec)))


async def delete_consumer(js: Any, stream: str, name: str) -> None:
    with translated_errors(f"delete consumer {name}"):
        await js.delete_consumer(stream, name)


async def pull(js: Any, stream: str, spec: ConsumerSpec) -> Pull:
    """A consumer made for this read (ephemeral unless `spec` names a durable), bound for fetching."""
    cfg = consumer_config(spec)
    with translated_errors(f"create a pull consumer on {stream}"):
        sub = await js.pull_subscribe(spec.filter_subjects[0] if spec.filter_subjects else "", stream=stream,
                                      durable=spec.durable_name, config=cfg)
    return Pull(js, sub, stream)


async def bind(js: Any, stream: str, durable: str) -> Pull:
    """The existing durable consumer `durable`, bound for fetching."""
    with translated_errors(f"bind to consumer {durable}"):
        return Pull(js, await js.pull_subscribe_bind(durable, stream=stream), stream)


async def ordered(js: Any, stream: str, subject: str, *, filter_subjects: tuple[str, ...] = (),
                  start_seq: int | None = None, new: bool = False, cb: Callback | None = None) -> Ordered:
    """An ordered push read of `subject` (or `filter_subjects`), from `start_seq`, from now (`new`),
    or from the beginning; with `cb`, each message is handed to it as it arrives."""
    cfg = api.ConsumerConfig()
    if start_seq is not None:
        cfg.deliver_policy, cfg.opt_start_seq = api.DeliverPolicy.BY_START_SEQUENCE, start_seq
    else:
        cfg.deliver_policy = api.DeliverPolicy.NEW if new else api.DeliverPolicy.ALL
    if filter_subjects:
        cfg.filter_subjects = list(filter_subjects)
    with translated_errors(f"ordered read of {subject or ', '.join(filter_subjects)}"):
        sub = await js.subscribe(subject, stream=stream, ordered_consumer=True, cb=cb, config=cfg)
    return Ordered(sub)


async def subscribe(nc: Any, subject: str, cb: Callback, *, queue: str = "") -> Subscription:
    with translated_errors(f"subscribe to {subject}"):
        return Subscription(await nc.subscribe(subject, queue=queue, cb=cb))


#: JSConsumerAlreadyExists: created meanwhile, or by an agent with its own settings
_EXISTS = 10148


async def create_consumer_if_absent(js: Any, nc: Any, stream: str, spec: ConsumerSpec, *,
                                    timeout: float) -> tuple[str, str] | None:
    """Create the consumer `spec` names with the JetStream action `create`, which never changes one that
    exists ("already exists" counts as done). None when done, else ("unanswered" or "refused", why)."""
    cfg = consumer_config(spec)
    api_prefix = getattr(js, "_prefix", None) or "$JS.API"  # a context made with another API prefix
    subject = f"{api_prefix}.CONSUMER.CREATE.{stream}.{cfg.name}.{cfg.filter_subject}"
    body = json.dumps({"stream_name": stream, "config": cfg.as_dict(), "action": "create"}).encode()
    try:
        reply = await nc.request(subject, body, timeout=timeout)
        err = json.loads(reply.data).get("error")
    except Exception as exc:  # no permission (no reply), a timeout, a closed connection
        return "unanswered", f"{exc or type(exc).__name__}"
    if err and err.get("err_code") != _EXISTS:
        return "refused", f"{err.get('description', err)}"
    return None
