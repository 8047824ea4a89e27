"""Watching one attempt of a task: its receipt, stall, timeout and deadline windows.

The windows run on the orchestrator's clock, from when it sent the request and saw the answers;
when a window runs out, the decision (NO_RECEIPT, STALLED, TIMED_OUT, DEADLINE_EXCEEDED) is written
into the ledger before the attempt counts as failed.
"""

from __future__ import annotations

import asyncio
import logging

from ledgerbus.eventstore.fold import TaskState, TaskStatus
from ledgerbus.ids import now_ms
from ledgerbus.orchestrator.backpressure import CapacityGate
from ledgerbus.orchestrator.clock import Clock
from ledgerbus.orchestrator.decisions import Emitter
from ledgerbus.orchestrator.inflight import Run
from ledgerbus.orchestrator.policy import TaskPolicy
from ledgerbus.orchestrator.receipts import QueueProbe, ReceiptWindow
from ledgerbus.orchestrator.router import Router
from ledgerbus.orchestrator.stalls import check_task, next_check_ms
from ledgerbus.schemas.codes import RETRYABLE_CODES, ErrorCode
from ledgerbus.schemas.envelope import Envelope, ErrorInfo

log = logging.getLogger("ledgerbus.orchestrator")


class Attempts:
    """Sends attempts and watches them until they are answered or one of their windows runs out."""

    def __init__(self, *, emitter: Emitter, clock: Clock, router: Router, capacity: CapacityGate,
                 queues: QueueProbe) -> None:
        self.emitter = emitter
        self.clock = clock
        self.router = router
        self.capacity = capacity
        self.queues = queues
        self.sent_requests = 0  # REQUESTs to agents, first attempts and retries alike

    async def when_free(self, run: Run, request: Envelope, policy: TaskPolicy) -> ErrorInfo | None:
        """`watch`, once the agent type has a free slot (backpressure): a request the type cannot take
        yet waits here, not in its queue, so its receipt window starts when an instance can take it."""
        agent = request.recipient
        wait = None if request.deadline is None else max((request.deadline - self.clock()) / 1000, 0.0)
        await self.capacity.acquire(agent, self.router.capacity(agent), timeout=wait)
        try:
            return await self.watch(run, request, policy)
        finally:
            self.capacity.release(agent)

    async def watch(self, run: Run, request: Envelope, policy: TaskPolicy, *, publish: bool = True) -> ErrorInfo | None:
        """Send one attempt (or, resuming, watch one already sent): None on RESPONSE, else why it failed."""
        task_id = request.task_id
        wake = run.wakeups.setdefault(task_id, asyncio.Event())
        wake.clear()
        seq: int | None = None
        if publish:
            request.timestamp = now_ms()  # the send time, after any rate-limit wait
            seq = getattr(await self.emitter.emit(run, request), "seq", None)
            self.sent_requests += 1
        window = ReceiptWindow(run.state.tasks[task_id].sent_at or self.clock())
        while True:
            task = run.state.tasks[task_id]
            if task.status is TaskStatus.DONE:
                return None
            if _failed(task, request):
                return task.error  # the agent's ERROR, or a stall/timeout already recorded for this attempt
            now = self.clock()
            code = check_task(task, now, policy, receipt_since=window.since)
            if code == ErrorCode.NO_RECEIPT.value and await self._receipt_pending(run, request, window, seq):
                continue
            if code is not None:
                return await self._ran_out(run, request, policy, task, code, now)
            due = next_check_ms(task, policy, receipt_since=window.since)
            await self.clock.wait(wake, max((due - self.clock()) / 1000, 0.001) if due is not None else 1.0)
            wake.clear()

    async def _ran_out(self, run: Run, request: Envelope, policy: TaskPolicy, task: TaskState, code: str,
                       now: int) -> ErrorInfo:
        """Record that one of the attempt's windows ran out; the error the attempt failed with."""
        msg = _window_message(code, request, policy, now - (task.last_activity_at or task.sent_at or now))
        err = ErrorInfo(code=code, message=msg, retryable=code in RETRYABLE_CODES,
                        details={"agent": request.recipient, "attempt": request.attempt})
        await self.emitter.decision(run, request, ErrorCode(code), msg, retryable=err.retryable, details=err.details)
        return err

    async def _receipt_pending(self, run: Run, request: Envelope, window: ReceiptWindow, seq: int | None) -> bool:
        """The receipt window ran out: True when that is not NO_RECEIPT (the request waits in the type's
        queue behind live instances: its window restarts; or the ACK was folded during the look)."""
        view = await self.queues.view(request.recipient, newer_than=window.since)
        if run.state.tasks[request.task_id].status is not TaskStatus.SENT:
            return True  # answered meanwhile: look again
        if window.judge(view, seq, self.clock()):
            return False
        log.debug("%s: request %s still queued for %s (%d pending, %d in instances' hands): waiting on",
                  run.root.conversation_id, request.id, request.recipient, view.num_pending, view.num_ack_pending)
        return True


def _failed(task: TaskState, request: Envelope) -> bool:
    """Whether this attempt has ended with an error in the fold."""
    return task.status is not TaskStatus.SENT and task.status is not TaskStatus.ACKED \
        and task.error is not None and task.attempt == request.attempt


def _window_message(code: str, request: Envelope, policy: TaskPolicy, silent_ms: int) -> str:
    return {
        ErrorCode.NO_RECEIPT.value: f"no ACK from {request.recipient} within {policy.receipt_timeout}s",
        ErrorCode.STALLED.value: f"{request.recipient} ACKed, then silent for {silent_ms / 1000:.1f}s (stall window {policy.stall_after}s)",
        ErrorCode.TIMED_OUT.value: f"no answer from {request.recipient} within {policy.timeout}s",
        ErrorCode.DEADLINE_EXCEEDED.value: f"no answer from {request.recipient} before the request's deadline",
    }[code]
