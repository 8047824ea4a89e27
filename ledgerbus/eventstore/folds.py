"""Many conversations folded in one pass over a ledger: the fold (fold.py) per conversation, one state each.

The one loop the orchestrator's recovery, replay and the CLI's views share; pure (`Folds`), with the read
of an EventSource beside it (`fold_source`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ledgerbus.eventstore.base import EventFilter, EventSource, StoredEvent
from ledgerbus.eventstore.fold import ConversationState, ConversationStatus, apply

_RUNNING = ConversationStatus.RUNNING


class Folds:
    """Events of any number of conversations, folded in ledger order into one state per conversation.

    With `on_end`, a conversation that ends (DONE, DEGRADED, FAILED) is handed to it and forgotten, so
    memory follows the open conversations, not the ledger's length; an event for a conversation handed
    over already is counted in `late`, not folded (what is kept of an ended one is a 64-bit hash of its id).
    """

    def __init__(self, on_end: Callable[[ConversationState], None] | None = None) -> None:
        self.states: dict[str, ConversationState] = {}
        self.on_end = on_end
        self.late = 0
        self._ended: set[int] = set()

    def add(self, ev: StoredEvent) -> ConversationState | None:
        """Fold one event; its conversation's state, or None for a late one (see the class)."""
        env = ev.envelope
        cid = env.conversation_id
        st = self.states.get(cid)
        if st is None:
            if self.on_end is not None and hash(cid) in self._ended:
                self.late += 1
                return None
            st = self.states[cid] = ConversationState(conversation_id=cid)
        apply(st, env, ev.position, ev.stored_at)  # JetStream's time, not the sender's
        if self.on_end is not None and st.status is not _RUNNING:
            self._ended.add(hash(cid))
            self.on_end(self.states.pop(cid))
        return st

    def add_all(self, events: Iterable[StoredEvent]) -> "Folds":
        for ev in events:
            self.add(ev)
        return self

    def finish(self) -> dict[str, ConversationState]:
        """With `on_end`, hand it the conversations still open (and forget them); the states kept."""
        if self.on_end is not None:
            for cid in list(self.states):
                self._ended.add(hash(cid))
                self.on_end(self.states.pop(cid))
        return self.states


async def fold_source(source: EventSource, flt: EventFilter | None = None, *, folds: Folds | None = None,
                      each: Callable[[list[StoredEvent]], None] | None = None) -> Folds:
    """Fold every event of `source` that `flt` selects, streamed in batches (memory follows the states);
    `each` sees every batch once it is folded (a progress bar, a side table)."""
    folds = folds if folds is not None else Folds()
    async for chunk in source.batches(flt):
        folds.add_all(chunk)
        if each is not None:
            each(chunk)
    return folds
