"""The supervisor of one task: its attempts, retries with backoff, fallback and breaker accounting.

One failing agent only ever affects its own tasks: each attempt goes through its agent type's
breaker and rate-limit bucket, and every decision (a retry scheduled, a breaker open, a fallback
used) is an envelope in the ledger.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

import msgspec

from ledgerbus.errors import InvalidMessage
from ledgerbus.eventstore.fold import TaskState, TaskStatus
from ledgerbus.orchestrator.attempt import Attempts
from ledgerbus.orchestrator.breaker import BreakerRegistry
from ledgerbus.orchestrator.clock import Clock
from ledgerbus.orchestrator.decisions import Emitter
from ledgerbus.orchestrator.inflight import Run, StepResult, fallback_task_id
from ledgerbus.orchestrator.plan import Step
from ledgerbus.orchestrator.policy import FallbackCapability, FallbackValue, PolicySet, TaskPolicy
from ledgerbus.orchestrator.publisher import Publisher
from ledgerbus.orchestrator.ratelimit import Limiter
from ledgerbus.orchestrator.router import Router
from ledgerbus.schemas.capability import CapabilityRegistry
from ledgerbus.schemas.codes import RETRYABLE_CODES, Action, ErrorCode
from ledgerbus.schemas.envelope import Envelope, ErrorInfo, answer, new_request

#: A fallback capability may itself fall back, this many levels deep (`<task>_fb1_fb2_fb3`).
MAX_FALLBACK_DEPTH = 3

#: Failures that say something about the agent's health (and so count against its breaker).
#: Bad input is the requester's fault and must not open anyone's breaker.
_AGENT_FAULTS = frozenset(
    {
        ErrorCode.NO_RECEIPT.value,
        ErrorCode.STALLED.value,
        ErrorCode.TIMED_OUT.value,
        ErrorCode.HANDLER_ERROR.value,
        ErrorCode.INTERNAL.value,
        ErrorCode.INVALID_OUTPUT.value,
    }
)


@dataclass(frozen=True)
class TaskCall:
    """One task to see through: which conversation, step, task id, capability and input."""

    run: Run
    step: Step
    task_id: str
    capability: str
    payload: dict[str, Any]
    fallback_depth: int = 0


@dataclass(frozen=True)
class _Next:
    """Where a task's attempts go on from: the attempt number, and the request sent before it."""

    attempt: int
    prev_request: Envelope | None = None


class Supervisor:
    def __init__(self, *, name: str, emitter: Emitter, publisher: Publisher, clock: Clock, attempts: Attempts,
                 policies: PolicySet, registry: CapabilityRegistry, router: Router, breakers: BreakerRegistry,
                 limiter: Limiter, rng: random.Random) -> None:
        self.name = name
        self.emitter = emitter
        self.publisher = publisher
        self.clock = clock
        self.attempts = attempts
        self.policies = policies
        self.registry = registry
        self.router = router
        self.breakers = breakers
        self.limiter = limiter
        self.rng = rng

    async def task(self, call: TaskCall) -> StepResult:
        """See the task through: a result (perhaps a fallback's), or the failure it ended with."""
        existing = call.run.state.tasks.get(call.task_id)
        if existing is not None and existing.status is TaskStatus.DONE:
            return recorded(call.step, existing)  # resumed: answered before (a fallback task re-entered)
        start: StepResult | _Next = _Next(1)
        if existing is not None and existing.attempt:
            start = await self._pick_up(call, existing)
        if isinstance(start, StepResult):
            return start
        return await self._attempt_loop(call, start)

    async def _pick_up(self, call: TaskCall, existing: TaskState) -> StepResult | _Next:
        """Where a resumed task goes on from, given what the ledger shows of its attempts."""
        inflight = call.run.requests.get(call.task_id)
        if inflight is None:
            return _Next(existing.attempt + 1)
        if existing.status in (TaskStatus.SENT, TaskStatus.ACKED):
            # Resumed while this attempt was in flight: its agent may still answer. Watch it before
            # sending another, so a handler that is running is not started a second time.
            agent = inflight.recipient
            policy = self.policies.for_task(call.capability, agent)
            err = await self.attempts.watch(call.run, inflight, policy, publish=False)
            if err is None:
                return self._done(call, agent)
            if not self._after_failure(agent, err, policy, inflight.attempt):
                return await self._give_up(call, policy, agent, inflight, err)
            return _Next(inflight.attempt + 1, inflight)
        if existing.retry_pending:
            return _Next(inflight.attempt + 1)
        if existing.finished and existing.error is not None:
            # Failed before the resume. Retry only if the policy would have: otherwise the predecessor
            # was giving up on it, so do what it was about to (the fallback, or fail the step).
            err, agent = existing.error, inflight.recipient
            policy = self.policies.for_task(call.capability, agent)
            if not policy.retry.should_retry(inflight.attempt, err.retryable or err.code in RETRYABLE_CODES):
                return await self._give_up(call, policy, agent, inflight, err)
        return _Next(existing.attempt + 1)

    async def _attempt_loop(self, call: TaskCall, start: _Next) -> StepResult:
        attempt, prev_request = start.attempt, start.prev_request
        last_error: ErrorInfo | None
        while True:
            agent, skipped = await self.router.route(call.capability, self.breakers)
            policy = self.policies.for_task(call.capability, agent)
            request = self._request(call, agent, skipped, attempt)
            if agent is None:
                last_error = await self._breaker_open(call.run, prev_request or request, skipped)
                break
            sent, last_error = await self._try(call, request, agent, policy)
            if not sent:
                break
            prev_request = request
            if last_error is None:
                self.breakers.get(agent).record_success()
                return self._done(call, agent)
            if not self._after_failure(agent, last_error, policy, attempt):
                break
            if await self._retry_later(call, request, policy, attempt, last_error):
                return self._done(call, agent)  # the failed attempt's late answer came meanwhile
            attempt += 1
        return await self._give_up(call, policy, agent, prev_request, last_error)

    def _request(self, call: TaskCall, agent: str | None, skipped: list[str], attempt: int) -> Envelope:
        root = call.run.root
        return new_request(
            sender=self.name, recipient=agent or (skipped[0] if skipped else call.capability.split(".")[0]),
            capability=call.capability, payload=call.payload, conversation_id=root.conversation_id,
            task_id=call.task_id, attempt=attempt, idempotency_key=call.task_id, causation_id=root.id,
            deadline=root.deadline,  # the conversation's: past it, no step's answer is of use
        )

    async def _breaker_open(self, run: Run, about: Envelope, skipped: list[str]) -> ErrorInfo:
        err = ErrorInfo(code=ErrorCode.BREAKER_OPEN.value,
                        message=f"circuit breaker open for {', '.join(skipped)}; request not sent",
                        details={"agents": skipped})
        retry_after = round(max(self.breakers.get(a).retry_after() for a in skipped), 3)
        await self.emitter.decision(run, about, ErrorCode.BREAKER_OPEN, err.message,
                                    details={"agents": skipped, "retryAfter": retry_after})
        return err

    async def _try(self, call: TaskCall, request: Envelope, agent: str,
                   policy: TaskPolicy) -> tuple[bool, ErrorInfo | None]:
        """Send one attempt and watch it: (False, why) when the input was refused before sending."""
        try:
            invalid = self._invalid_input(call)
            if invalid is not None:
                self.breakers.get(agent).release()
                await self.emitter.decision(call.run, request, ErrorCode.INVALID_MESSAGE, invalid.message)
                return False, invalid
            waited = await self.limiter.acquire(agent, sleep=self.clock.sleep)
            if waited > 0.05:
                await self.emitter.decision(call.run, request, ErrorCode.RATE_LIMITED,
                                            f"waited {waited:.2f}s for the rate limit of {agent}",
                                            details={"waited": round(waited, 4)})
            return True, await self.attempts.when_free(call.run, request, policy)
        except BaseException:
            # Cancelled, out of budget, or the ledger unreachable: the outcome is unknown, so give a
            # half-open breaker's probe slot back rather than leave the agent type shut for good.
            self.breakers.get(agent).release()
            raise

    def _invalid_input(self, call: TaskCall) -> ErrorInfo | None:
        try:
            cap = self.registry.find(call.capability)
            if cap is not None:
                cap.validate_input(call.payload)
        except InvalidMessage as exc:
            return ErrorInfo(code=exc.code, message=exc.reason, details={"path": exc.path} if exc.path else {})
        return None

    async def _retry_later(self, call: TaskCall, request: Envelope, policy: TaskPolicy, attempt: int,
                           last_error: ErrorInfo) -> bool:
        """Schedule the next attempt and wait out its backoff; True if the task got DONE meanwhile."""
        delay = policy.retry.next_delay(attempt, self.rng)
        await self.emitter.decision(call.run, request, ErrorCode.RETRY_SCHEDULED,
                                    f"attempt {attempt} failed ({last_error.code}); attempt {attempt + 1} in {delay:.3f}s",
                                    details={"delay": round(delay, 4), "nextAttempt": attempt + 1, "cause": last_error.code})
        return await self._backoff(call.run, call.task_id, delay)

    async def _backoff(self, run: Run, task_id: str, delay: float) -> bool:
        """Wait out a retry's backoff; True as soon as the task is DONE instead (tasks are idempotent, so a
        late RESPONSE to the attempt that failed is a valid answer, and the retry is not sent)."""
        until = self.clock.monotonic() + delay
        wake = run.wakeups.setdefault(task_id, asyncio.Event())
        while run.state.tasks[task_id].status is not TaskStatus.DONE:
            left = until - self.clock.monotonic()
            if left <= 0:
                return False
            wake.clear()
            await self.clock.wait(wake, left)
        return True

    def _done(self, call: TaskCall, agent: str | None) -> StepResult:
        t = call.run.state.tasks[call.task_id]
        return StepResult(call.step, call.task_id, True, t.result, agent, False, None, t.attempts)

    def _after_failure(self, agent: str, err: ErrorInfo, policy: TaskPolicy, attempt: int) -> bool:
        """Charge the breaker for the failure; whether to try again."""
        breaker = self.breakers.get(agent)
        # An outage of our own connection (disconnect, reconnect, failed publish) makes agents look silent
        # for up to a stall window afterwards: those failures are not the agents' to pay for.
        ours = self.publisher.in_trouble(policy.stall_after + policy.receipt_timeout + 1.0)
        if err.code in _AGENT_FAULTS and not ours:
            breaker.record_failure()
        else:
            breaker.release()  # the agent answered; the request was the problem
        return policy.retry.should_retry(attempt, err.retryable or err.code in RETRYABLE_CODES)

    async def _give_up(self, call: TaskCall, policy: TaskPolicy, agent: str | None, prev_request: Envelope | None,
                       last_error: ErrorInfo | None) -> StepResult:
        run, task_id = call.run, call.task_id
        attempts = run.state.tasks[task_id].attempts if task_id in run.state.tasks else 0
        fb = policy.fallback
        if isinstance(fb, FallbackValue):
            await self._use_value(call, fb, prev_request, last_error)
            return StepResult(call.step, task_id, True, fb.as_payload(), agent, True, last_error, attempts)
        if isinstance(fb, FallbackCapability) and call.fallback_depth < MAX_FALLBACK_DEPTH:
            depth = call.fallback_depth + 1
            res = await self.task(TaskCall(run, call.step, fallback_task_id(task_id, depth), fb.capability,
                                           call.payload, depth))
            res.fallback = res.ok
            res.error = res.error or last_error
            return res
        return StepResult(call.step, task_id, False, None, agent, False, last_error, attempts)

    async def _use_value(self, call: TaskCall, fb: FallbackValue, prev_request: Envelope | None,
                         last_error: ErrorInfo | None) -> None:
        """Answer the task with its fallback value, flagged FALLBACK_USED with the cause."""
        base = prev_request or new_request(sender=self.name, recipient=self.name, capability=call.capability,
                                           payload=call.payload, conversation_id=call.run.root.conversation_id,
                                           task_id=call.task_id, idempotency_key=call.task_id)
        env = answer(base, Action.RESPONSE, sender=self.name, payload=fb.as_payload(), error=ErrorInfo(
            code=ErrorCode.FALLBACK_USED.value,
            message=f"fallback value used after {last_error.code if last_error else 'failure'}",
            details={"cause": msgspec.to_builtins(last_error) if last_error else None}))
        env.recipient = self.name
        await self.emitter.emit(call.run, env)


def recorded(step: Step, t: TaskState) -> StepResult:
    """A step's result as the ledger recorded it (a resumed conversation does not run it again)."""
    return StepResult(step, t.task_id, True, t.result, t.agent, t.fallback, t.error, t.attempts)
