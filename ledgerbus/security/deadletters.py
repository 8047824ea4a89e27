"""Dead letters: a request JetStream gave up on after MaxDeliver deliveries gets an ERROR DEAD_LETTER.

JetStream publishes `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>` when a message has
been delivered MaxDeliver times without an ack (every instance that took it crashed or hung). The watcher
turns each advisory into an ERROR envelope answering the request, so the requester's task fails with a
reason instead of hanging, and the ledger says what happened. The ERROR's id is derived from the stream
sequence: several watchers (one per agent instance) publish the same id and JetStream keeps one.

`find()` lists dead letters from the ledger; `redrive()` re-sends a dead-lettered request as a new attempt
whose `causationId` is the DEAD_LETTER, which is how a redriven letter is told apart from a pending one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from ledgerbus.bus.connection import Bus
from ledgerbus.bus.messages import pending_after, stream_sequence
from ledgerbus.errors import ConfigError, InvalidMessage, RedriveError as RedriveError  # RedriveError: re-exported
from ledgerbus.ids import now_ms, uuid7
from ledgerbus.schemas.codes import Action, ErrorCode
from ledgerbus.schemas.envelope import Envelope, ErrorInfo, answer

log = logging.getLogger("ledgerbus.deadletters")

ADVISORY = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{consumer}"


class MaxDeliveries(msgspec.Struct):
    """The fields of JetStream's io.nats.jetstream.advisory.v1.max_deliver advisory that we use."""

    stream: str
    consumer: str
    stream_seq: int
    deliveries: int


_advisory = msgspec.json.Decoder(MaxDeliveries)


def letter_id(stream_seq: int) -> str:
    return f"deadletter-{stream_seq}"


def dead_letter(request: Envelope, *, stream_seq: int, deliveries: int, consumer: str, sender: str) -> Envelope:
    """The ERROR DEAD_LETTER answering `request` (pure)."""
    err = ErrorInfo(
        code=ErrorCode.DEAD_LETTER.value,
        message=(
            f"dead letter: request {request.id} ({request.capability} for {request.recipient}) was delivered "
            f"{deliveries} times (MaxDeliver) and never acknowledged; no instance will take it again. "
            f"Re-send it with `ledgerbus deadletters redrive {letter_id(stream_seq)}`."
        ),
        retryable=False,
        details={"streamSeq": stream_seq, "deliveries": deliveries, "consumer": consumer, "requestId": request.id},
    )
    env = answer(request, Action.ERROR, sender=sender, error=err)
    return msgspec.structs.replace(env, id=letter_id(stream_seq))


class DeadLetterWatcher:
    """Subscribes to MAX_DELIVERIES advisories (of one consumer, or all with "*") and publishes DEAD_LETTERs."""

    def __init__(self, bus: Bus, *, consumer: str = "*", sender: str = "ledgerbus", queue: str = "ledgerbus-deadletters") -> None:
        self.bus = bus
        self.consumer = consumer
        self.sender = sender
        self.queue = queue
        self.published: list[Envelope] = []
        self._sub: Any = None

    async def start(self) -> "DeadLetterWatcher":
        subject = ADVISORY.format(stream=self.bus.subjects.stream, consumer=self.consumer)
        self._sub = await self.bus.subscribe(subject, self._on_advisory, queue=self.queue)
        return self

    async def stop(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:  # closing connection: nothing left to unsubscribe
                pass
            self._sub = None

    async def _on_advisory(self, msg: Any) -> None:
        try:
            adv = _advisory.decode(msg.data)
        except msgspec.DecodeError as exc:
            log.warning("unreadable MAX_DELIVERIES advisory: %s", exc)
            return
        try:
            env = await self.letter_for(adv)
            if env is not None:
                await self.bus.publish(env)
                self.published.append(env)
        except Exception as exc:  # a watcher must survive a broken message or a reconnect
            log.warning("could not dead-letter stream sequence %d: %s", adv.stream_seq, exc)

    async def letter_for(self, adv: MaxDeliveries) -> Envelope | None:
        raw = await self.bus.get_msg(adv.stream_seq, stream=adv.stream)
        try:
            req = self.bus.codec.decode(raw.data or b"")
        except InvalidMessage:
            return None  # undecodable requests are terminated (and answered) by the runtime, never redelivered
        return dead_letter(req, stream_seq=adv.stream_seq, deliveries=adv.deliveries, consumer=adv.consumer, sender=self.sender)


@dataclass
class Letter:
    error: Envelope
    stream_seq: int
    request_seq: int
    redriven_by: str | None = None

    @property
    def id(self) -> str:
        return self.error.id


async def _scan(bus: Bus, timeout: float) -> list[tuple[int, Envelope]]:
    """Every decodable REQUEST and ERROR envelope in the ledger with its stream sequence."""
    info = await bus.stream_info()
    last = info.last_seq
    out: list[tuple[int, Envelope]] = []
    if info.messages == 0:
        return out
    prefix = bus.subjects.prefix
    sub = await bus.ordered(bus.subjects.all(), filter_subjects=(f"{prefix}.*.REQUEST.>", f"{prefix}.*.ERROR.>"))
    try:
        while True:
            try:
                msg = await sub.next(timeout)
            except Exception:
                break  # nothing more within the timeout: the filtered tail is empty
            seq = stream_sequence(msg)
            try:
                out.append((seq, bus.codec.decode(msg.data)))
            except InvalidMessage:
                pass
            if seq >= last or pending_after(msg) == 0:
                break
    finally:
        await sub.close()
    return out


async def find(bus: Bus, *, include_redriven: bool = False, timeout: float = 2.0) -> list[Letter]:
    events = await _scan(bus, timeout)
    redriven = {e.causation_id: e.id for _, e in events if e.action is Action.REQUEST and e.causation_id}
    letters = []
    for seq, e in events:
        if e.action is Action.ERROR and e.error is not None and e.error.code == ErrorCode.DEAD_LETTER.value:
            letter = Letter(e, seq, int(e.error.details.get("streamSeq", 0)), redriven.get(e.id))
            if include_redriven or letter.redriven_by is None:
                letters.append(letter)
    return letters


async def redrive(bus: Bus, letter: Letter, *, sender: str | None = None) -> Envelope:
    """Re-send the dead-lettered request as the next attempt of the same task (same idempotency key).

    `sender` defaults to the request's own: a retry counts in the fold only from whoever asked the task
    (or the conversation's conductor), so a re-drive by anyone else would be ignored there."""
    if letter.redriven_by is not None:
        raise RedriveError(f"{letter.id} was already redriven by request {letter.redriven_by}")
    try:
        raw = await bus.get_msg(letter.request_seq)
        req = bus.codec.decode(raw.data or b"")
    except Exception as exc:
        raise RedriveError(f"the request of {letter.id} (stream sequence {letter.request_seq}) cannot be read: {exc}") from None
    env = msgspec.structs.replace(
        req, id=uuid7(), sender=sender or req.sender, reply_to=req.answer_to, causation_id=letter.id,
        attempt=req.attempt + 1, timestamp=now_ms(), deadline=None,
    )
    await bus.publish(env)
    return env



async def redrive_named(bus: Bus, ids: Sequence[str], *, sender: str | None = None) -> list[tuple[str, Envelope]]:
    """Re-drive the dead letters `ids` (none: every one not yet re-driven): (letter id, the new REQUEST) each.

    What `ledgerbus deadletters redrive` and the web UI's re-drive action both run. ConfigError naming the
    ids the ledger holds no dead letter for, before anything is sent."""
    letters = {x.id: x for x in await find(bus, include_redriven=True)}
    unknown = [i for i in ids if i not in letters]
    if unknown:
        raise ConfigError(f"no dead letter {', '.join(unknown)} in the ledger (see `ledgerbus deadletters list`)")
    chosen = [letters[i] for i in ids] if ids else [x for x in letters.values() if x.redriven_by is None]
    return [(letter.id, await redrive(bus, letter, sender=sender)) for letter in chosen]
