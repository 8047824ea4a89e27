"""Reading the live ledger back, for recovery: which conversations did a previous orchestrator leave open?

Recovery reads JetStream, not the SQLite mirror, so an orchestrator can resume even where no recorder
runs. An ordered consumer streams the matching envelopes once, in ledger order, and goes away.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import nats.errors
from nats.js import api

from ledgerbus.bus.connection import Bus
from ledgerbus.errors import InvalidMessage
from ledgerbus.eventstore.base import StoredEvent
from ledgerbus.eventstore.fold import ConversationStatus, fold_all
from ledgerbus.schemas.envelope import Envelope


async def stream_events(bus: Bus, subject: str | None = None, *, idle: float = 2.0) -> AsyncIterator[StoredEvent]:
    """Every envelope on `subject` (default: the whole ledger) that the stream held when called."""
    info = await bus.js.stream_info(bus.subjects.stream)
    last = info.state.last_seq
    if info.state.messages == 0:
        return
    sub = await bus.js.subscribe(subject or bus.subjects.all(), stream=bus.subjects.stream, ordered_consumer=True,
                                 deliver_policy=api.DeliverPolicy.ALL)
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=idle)
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                return  # nothing more matches the filter
            meta = msg.metadata
            if meta.sequence.stream > last:
                return
            try:
                yield StoredEvent(meta.sequence.stream, bus.codec.decode(msg.data), msg.data)
            except InvalidMessage:
                pass  # recorded as a reject by the recorder; nothing to fold
            if meta.num_pending == 0 or meta.sequence.stream >= last:
                return
    finally:
        await sub.unsubscribe()


async def conversation_events(bus: Bus, conversation_id: str) -> list[Envelope]:
    return [ev.envelope async for ev in stream_events(bus, bus.subjects.conversation(conversation_id))]


async def open_conversations(bus: Bus, orchestrator: str) -> dict[str, list[Envelope]]:
    """Conversations whose root REQUEST went to `orchestrator` and that have not ended, with their envelopes."""
    by_conv: dict[str, list[Envelope]] = {}
    positioned: list[tuple[int, Envelope]] = []
    async for ev in stream_events(bus):
        by_conv.setdefault(ev.envelope.conversation_id, []).append(ev.envelope)
        positioned.append((ev.position, ev.envelope))
    states = fold_all(positioned)
    out = {}
    for cid, st in states.items():
        root = st.root
        if root is not None and root.agent == orchestrator and st.status is ConversationStatus.RUNNING:
            out[cid] = by_conv[cid]
    return out
