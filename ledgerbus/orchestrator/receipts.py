"""NO_RECEIPT means nobody took the request, not that it is waiting in a busy type's queue.

When an attempt's receipt window runs out, the orchestrator looks at the agent type's queue (its
durable consumer, and the directory's live instances) before it calls the type unavailable. A request
JetStream has not yet delivered while instances are live or pulling is backpressure: its receipt
window starts again from that observation. The task timeout and the deadline still run from the send,
so the wait stays bounded. The look costs one consumer-info call per type at most every `max_age`
seconds, shared by every attempt that asks meanwhile, and only when a receipt window has run out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from ledgerbus.bus.connection import Bus
from ledgerbus.bus.streams import consumer_name
from ledgerbus.errors import NotFound

log = logging.getLogger("ledgerbus.orchestrator")


@dataclass(frozen=True)
class QueueView:
    """An agent type's queue as JetStream and the directory showed it at `observed_at` (ms)."""

    observed_at: int
    consumer: bool = True  # the type's durable consumer exists
    live_instances: int | None = None  # in the directory; None when there is no directory to ask
    num_pending: int = 0  # stored for the type, not yet delivered to any instance
    num_waiting: int = 0  # pull requests of idle instances
    num_ack_pending: int = 0  # delivered, not yet acknowledged (in instances' hands)
    delivered_seq: int = 0  # the highest stream sequence delivered to an instance


def served(view: QueueView) -> bool:
    """Someone is there for the type: the directory lists a live instance, or an instance is pulling."""
    return view.consumer and ((view.live_instances or 0) > 0 or view.num_waiting > 0)


def delivered(view: QueueView, request_seq: int | None) -> bool:
    """Whether JetStream has handed the request to an instance (without its sequence: whether the type
    has nothing left undelivered)."""
    if request_seq is not None:
        return view.delivered_seq >= request_seq
    return view.num_pending == 0


class ReceiptWindow:
    """One attempt's receipt window, measured from when an instance could take the request.

    It starts at the send. When it runs out and the request is still in the type's queue behind live
    instances, it starts again (backpressure); when it is found just handed to an instance, it starts
    again once more, from that sighting (the ACK is on its way). Run out after that, or with nobody
    serving the type: NO_RECEIPT.
    """

    def __init__(self, sent_at: int) -> None:
        self.since = sent_at
        self.extensions = 0
        self._seen_delivered = False

    def judge(self, view: QueueView, request_seq: int | None, now: int) -> bool:
        """The window has run out at `now`: True when NO_RECEIPT stands, False when it starts again."""
        if not served(view):
            return True
        if delivered(view, request_seq):
            if self._seen_delivered:
                return True  # taken a whole window ago, and no receipt since
            self._seen_delivered = True
        self.since = max(self.since, now)
        self.extensions += 1
        return False


class QueueProbe:
    """Reads agent types' queues for receipt decisions: cached per type, one read in flight at a time."""

    def __init__(self, bus: Bus, *, live_instances: Callable[[str], int | None],
                 clock: Callable[[], int], max_age_ms: int = 500) -> None:
        self.bus = bus
        self.live_instances = live_instances
        self.clock = clock
        self.max_age_ms = max_age_ms
        self.reads = 0  # consumer-info calls made (the hot path must not make one per request)
        self._views: dict[str, QueueView] = {}
        self._reading: dict[str, asyncio.Task[QueueView]] = {}

    async def view(self, agent: str, *, newer_than: int | None = None) -> QueueView:
        """The type's queue, read at most `max_age_ms` ago (and after `newer_than`, when given)."""
        cached = self._views.get(agent)
        fresh_from = self.clock() - self.max_age_ms
        if newer_than is not None:
            fresh_from = max(fresh_from, newer_than)  # a view from before the send cannot tell about it
        if cached is not None and cached.observed_at >= fresh_from:
            return cached
        reading = self._reading.get(agent)
        if reading is None or reading.done():
            reading = self._reading[agent] = asyncio.create_task(self._read(agent))
        # asyncio.wait, not await: a caller cancelled while it waits leaves the shared read running.
        await asyncio.wait((reading,))
        return reading.result()

    async def _read(self, agent: str) -> QueueView:
        self.reads += 1
        live = self.live_instances(agent)
        try:
            info = await self.bus.consumer_info(consumer_name(agent), timeout=2.0)
        except NotFound:
            view = QueueView(self.clock(), consumer=False, live_instances=live)
        except Exception as exc:
            # Cannot tell (our own connection is in trouble): the plain rule applies, and the breaker
            # is not charged for it (Orchestrator._after_failure knows about our trouble).
            log.debug("consumer info for %s failed (%s): its receipt window is not extended", agent, exc)
            view = QueueView(self.clock(), consumer=False, live_instances=live)
        else:
            view = QueueView(
                self.clock(), live_instances=live,
                num_pending=info.num_pending or 0, num_waiting=info.num_waiting or 0,
                num_ack_pending=info.num_ack_pending or 0,
                delivered_seq=info.delivered_stream_seq,
            )
        self._views[agent] = view
        return view
