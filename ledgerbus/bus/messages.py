"""What the bus hands its readers: a delivered message, a message read from the stream by position,
and the stream's and a consumer's state. Plain types, so nothing above the bus sees nats-py's."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


class Message(Protocol):
    """A message delivered by a subscription or a consumer (nats-py's Msg is one)."""

    subject: str
    reply: str
    data: bytes
    headers: dict[str, str] | None

    @property
    def metadata(self) -> Any: ...

    async def ack(self) -> None: ...

    async def nak(self, delay: float | None = None) -> None: ...

    async def in_progress(self) -> None: ...

    async def term(self) -> None: ...


@dataclass(frozen=True)
class StoredMsg:
    """One message of a stream, read by its position (or as the last on a subject)."""

    seq: int
    subject: str
    data: bytes | None  # None: the stream holds the position but no body
    headers: dict[str, str] | None = None
    stored_ms: int | None = None  # when JetStream stored it (unix ms)


@dataclass(frozen=True)
class StreamInfo:
    """A stream's configuration and state, as far as ledgerbus reads them."""

    name: str
    messages: int = 0
    bytes: int = 0
    first_seq: int = 0
    last_seq: int = 0
    consumer_count: int = 0
    max_age: float | None = None  # seconds; None: no limit
    max_bytes: int | None = None  # None: no cap
    subjects: dict[str, int] = field(default_factory=dict)  # per-subject counts, when asked for


@dataclass(frozen=True)
class ConsumerState:
    """A consumer's position and backlog."""

    name: str
    durable: bool = False
    num_pending: int = 0
    num_ack_pending: int = 0
    num_redelivered: int = 0
    num_waiting: int = 0
    delivered_stream_seq: int = 0
    delivered_consumer_seq: int = 0


@dataclass(frozen=True)
class KVEntry:
    """A KV entry's value and revision (the stream sequence that wrote it)."""

    key: str
    value: bytes
    revision: int


def stream_sequence(msg: Any) -> int:
    """A consumer-delivered message's stream sequence, read from the ack subject without building nats-py's
    Metadata (a datetime and three objects per message: 8% of the recorder's CPU per event)."""
    tokens: list[str] = msg.reply.split(".") if msg.reply else []
    # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>; other forms
    # (domain and account hash, from servers in a cluster with domains) take nats-py's reading.
    if len(tokens) == 9 and tokens[0] == "$JS" and tokens[1] == "ACK":
        return int(tokens[5])
    return int(msg.metadata.sequence.stream)


def stored_ms(msg: Any) -> int | None:
    """When JetStream stored the message (unix ms), from the same ack subject: the observer's time the
    fold's windows run on (DESIGN.md, "Time is the observer's"); None when the message carries none."""
    tokens: list[str] = msg.reply.split(".") if msg.reply else []
    if len(tokens) == 9 and tokens[0] == "$JS" and tokens[1] == "ACK":
        return int(tokens[7]) // 1_000_000
    try:
        return datetime_ms(msg.metadata.timestamp)
    except Exception:  # not a JetStream message (core NATS): nobody stored it
        return None


def pending_after(msg: Any) -> int:
    """How many messages the consumer that delivered `msg` still had to deliver after it."""
    return int(msg.metadata.num_pending or 0)


def datetime_ms(value: Any) -> int | None:
    """A stored message's datetime as unix ms."""
    return round(value.timestamp() * 1000) if value is not None else None
