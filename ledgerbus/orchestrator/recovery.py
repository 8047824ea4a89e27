"""Reading the live ledger back, for recovery: which conversations did a previous orchestrator leave open?

Recovery reads JetStream, not the SQLite mirror, so an orchestrator can resume even where no recorder
runs.
"""

from __future__ import annotations

from ledgerbus.bus.connection import Bus
from ledgerbus.errors import NotFound
from ledgerbus.eventstore.fold import ConversationStatus
from ledgerbus.eventstore.folds import fold_source
from ledgerbus.eventstore.jetstream import JetStreamLedger
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import Envelope


async def conversation_events(bus: Bus, conversation_id: str) -> list[Envelope]:
    return await JetStreamLedger(bus).envelopes(conversation_id)


async def open_conversations(bus: Bus, orchestrator: str) -> dict[str, list[Envelope]]:
    """Conversations whose root REQUEST went to `orchestrator` and that have not ended, with their envelopes.

    Two passes: fold everything to find the open ones (memory grows with conversations, not events),
    then read only those conversations' events.
    """
    source = JetStreamLedger(bus)
    states = (await fold_source(source)).states
    open_ids = [
        cid for cid, st in states.items()
        if st.root is not None and st.root.agent == orchestrator and st.status is ConversationStatus.RUNNING
    ]
    return {cid: await source.envelopes(cid) for cid in open_ids}


async def root_acknowledged(bus: Bus, root: Envelope) -> bool:
    """Whether an orchestrator ever took up `root` (its ACK to the requester is in the ledger).

    One lookup of the last message on the ACK's subject, not a read of the conversation: a conversation
    imported, or finished before claims existed, is told apart from a new one at the cost of a round trip.
    """
    subject = f"{bus.subjects.prefix}.{root.answer_to}.{Action.ACK.value}.{root.conversation_id}"
    try:
        await bus.last_msg(subject)
    except NotFound:
        return False
    return True
