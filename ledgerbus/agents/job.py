"""One request between its receipt and its answer: heartbeats, time limit, claim, and who answered it."""

from __future__ import annotations

import asyncio
import enum
from typing import Any

from ledgerbus.agents.results import Claim
from ledgerbus.bus.messages import Message as Msg
from ledgerbus.schemas.envelope import Envelope


class Phase(enum.Enum):
    WAITING = "waiting"  # for the key's claim (or the claimant's result): cancellable
    RUNNING = "running"  # the handler: cancellable
    ANSWERING = "answering"  # recording and publishing the outcome, bounded by the publish timeout: never cancelled


class Heartbeat:
    """In-progress acks every `interval` while a request is worked on.

    A timer rather than a task per request: most handlers finish long before the first beat, and
    creating, starting and cancelling a task for each of them is measurable on the hot path.
    """

    def __init__(self, msg: Msg, interval: float) -> None:
        self._msg = msg
        self._interval = interval
        self._loop = asyncio.get_running_loop()
        self._sending: asyncio.Task[None] | None = None
        self._timer = self._loop.call_later(interval, self._beat)

    def _beat(self) -> None:
        self._sending = self._loop.create_task(self._send())
        self._timer = self._loop.call_later(self._interval, self._beat)

    async def _send(self) -> None:
        try:
            await self._msg.in_progress()
        except Exception:
            self._timer.cancel()  # the connection is gone: redelivery decides, not us

    def cancel(self) -> None:
        self._timer.cancel()
        if self._sending is not None:
            self._sending.cancel()


class Job:
    """A request being served, with the state its watchdog and its claim renewals share with the task."""

    __slots__ = ("req", "msg", "receipt", "limit", "task", "heartbeat", "phase", "expired", "answered",
                 "abandoned", "timer", "key", "claim", "revision", "renewer", "renewing")

    def __init__(self, req: Envelope, msg: Msg, receipt: "asyncio.Future[Any]", *, limit: float,
                 heartbeat: float) -> None:
        self.req, self.msg, self.receipt, self.limit = req, msg, receipt, limit
        task = asyncio.current_task()
        assert task is not None
        self.task: asyncio.Task[Any] = task
        self.heartbeat = Heartbeat(msg, heartbeat)
        self.phase = Phase.WAITING
        self.expired = False  # the time limit passed (the task was cancelled)
        self.answered = False  # an outcome is being, or has been, published: nothing else may be
        self.abandoned = False  # the handler ignored its cancellation and was left running
        self.timer: asyncio.TimerHandle | None = None  # the limit, then the grace for cancellation
        self.key: str | None = None  # the KV key of the request's claim and result
        self.claim: Claim | None = None
        self.revision = 0  # of this runtime's claim while it holds one
        self.renewer: asyncio.TimerHandle | None = None
        self.renewing: asyncio.Task[None] | None = None

    @property
    def cancellable(self) -> bool:
        return not self.answered and self.phase is not Phase.ANSWERING

    def stop_timers(self) -> None:
        self.heartbeat.cancel()
        if self.timer is not None:
            self.timer.cancel()
        if self.renewer is not None:
            self.renewer.cancel()
