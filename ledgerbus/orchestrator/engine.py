"""The orchestrator: runs a plan's steps as tasks on agents and survives their failure.

Every decision is an envelope in the ledger (an ERROR from `orchestrator` with its code, or a
RESPONSE flagged FALLBACK_USED), and the state it acts on is the fold of the envelopes it has seen,
so a replay of the ledger explains every step it took. One agent failing only ever affects its own
tasks: each step runs in its own asyncio task behind its own breaker and rate-limit bucket.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar

from ledgerbus.agents.directory import Directory
from ledgerbus.bus.connection import Bus
from ledgerbus.bus.requester import Requester
from ledgerbus.errors import ConfigError, ConnectionClosed, InvalidMessage, LedgerbusError, PublishError
from ledgerbus.eventstore.fold import ConversationState, ConversationStatus, TaskState, TaskStatus, fold
from ledgerbus.ids import now_ms
from ledgerbus.orchestrator.aggregate import Outcome
from ledgerbus.orchestrator.backpressure import CapacityGate
from ledgerbus.orchestrator.breaker import BreakerRegistry, BreakerState
from ledgerbus.orchestrator.conductors import DEFAULT_LEASE, Conductors, Held
from ledgerbus.orchestrator.clock import ObserverClock
from ledgerbus.orchestrator.inflight import ConversationResult, Run, StepResult, fallback_task_id, step_task_id
from ledgerbus.orchestrator.outcome import ConversationOutcome, StepReport
from ledgerbus.orchestrator.plan import Decomposer, Plan, PlanContext, SingleStepDecomposer, Step
from ledgerbus.orchestrator.plannote import plan_note
from ledgerbus.orchestrator.policy import FallbackCapability, FallbackValue, PolicySet, TaskPolicy
from ledgerbus.orchestrator.ratelimit import RateLimiter
from ledgerbus.orchestrator.receipts import QueueProbe, ReceiptWindow
from ledgerbus.orchestrator.router import Router
from ledgerbus.orchestrator.stalls import check_task, next_check_ms
from ledgerbus.schemas.capability import CapabilityRegistry, registry as default_registry
from ledgerbus.schemas.codes import RETRYABLE_CODES, Action, ErrorCode
from ledgerbus.schemas.envelope import Envelope, ErrorInfo, answer, new_request
from ledgerbus.tracing import instrument as tracing

log = logging.getLogger("ledgerbus.orchestrator")

R = TypeVar("R")

#: A fallback capability may itself fall back, this many levels deep (`<task>_fb1_fb2_fb3`).
_MAX_FALLBACK_DEPTH = 3

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


class Orchestrator:
    def __init__(
        self,
        bus: Bus,
        *,
        name: str = "orchestrator",
        decomposer: Decomposer | None = None,
        policies: PolicySet | None = None,
        router: Router | None = None,
        registry: CapabilityRegistry | None = None,
        rng: random.Random | None = None,
        use_directory: bool = True,
        lease: float = DEFAULT_LEASE,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.bus = bus
        # Unix ms on which receipt, stall and timeout windows run, and at which it folds what it sends and
        # hears (see orchestrator/clock.py): never the senders' timestamps.
        self.clock: Callable[[], int] = clock or ObserverClock()
        self.name = name
        self.decomposer = decomposer or SingleStepDecomposer()
        self.policies = policies or PolicySet()
        self.registry = registry if registry is not None else default_registry
        self.router = router or Router(directory=Directory(bus) if use_directory else None)
        self.rng = rng or random.Random()
        self.requester = Requester(bus, name, registry=self.registry)
        # One conductor per conversation, whatever else runs under this name: a claim renewed every lease/3.
        self.conductors = Conductors(bus, name, lease=lease)
        self.breakers = BreakerRegistry(
            default=self.policies.breaker,
            per_type=self.policies.per_agent_breaker,
            on_transition=self._on_breaker,
        )
        rate = self.policies.rate
        self.limiter = RateLimiter(
            global_rate=rate.global_rate,
            global_burst=rate.global_burst,
            per_key=rate.per_agent,
            default_rate=rate.agent_rate,
            default_burst=rate.agent_burst,
        )
        # Backpressure: no more requests in flight per agent type than its live instances take at once.
        self.capacity = CapacityGate()
        self.queues = QueueProbe(bus, live_instances=self.router.live_instances, clock=self.clock)
        self.runs: dict[str, Run] = {}
        self.sent_requests = 0  # REQUESTs to agents, first attempts and retries alike
        self.publish_patience = 60.0  # seconds an envelope is re-published while the server is unreachable
        # Recent transitions, for inspection: bounded, the ledger (BREAKER_OPEN decisions) is the record.
        self.breaker_log: deque[tuple[str, BreakerState, BreakerState]] = deque(maxlen=256)

    async def start(self) -> "Orchestrator":
        self.requester.add_listener(self._on_answer)
        await self.requester.start()
        return self

    async def stop(self) -> None:
        await self.router.close()
        await self.requester.stop()

    async def __aenter__(self) -> "Orchestrator":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the live fold ------------------------------------------------------------------------

    def _on_answer(self, env: Envelope) -> None:
        run = self.runs.get(env.conversation_id)
        if run is not None and run.fold_in(env, self.clock()):
            run.wake(env.task_id)

    def _on_breaker(self, agent: str, old: BreakerState, new: BreakerState) -> None:
        log.info("breaker %s: %s -> %s", agent, old.value, new.value)
        self.breaker_log.append((agent, old, new))

    async def _emit(self, run: Run, env: Envelope) -> Any:
        """Fold and publish `env`; returns JetStream's PubAck (its stream sequence)."""
        # Fold before publishing: an answer can arrive before our PubAck does.
        run.fold_in(env, self.clock())
        ack = await self._publish(env)
        tracing.on_emit(env, run.root.task_id)  # decisions become span events with their codes
        return ack

    async def _publish(self, env: Envelope) -> Any:
        """Publish until JetStream has stored it, riding out a server restart or a leader election.

        Already folded, the envelope must reach the ledger or the live state and the replay would
        disagree. Publishing the same envelope id again is safe: JetStream deduplicates it.
        """
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.publish_patience
        delay = 0.1
        while True:
            try:
                # Our own root REQUEST is not for anyone else to take: it creates no consumer for this name.
                return await self.bus.publish(env, ensure_consumer=env.recipient != self.name)
            except Exception as exc:
                if not _may_pass(exc):
                    raise
                self.bus.note_trouble()
                if loop.time() + delay > give_up:
                    raise
                log.warning("publish of %s %s failed (%s); retrying in %.1fs", env.action.value, env.id,
                            exc or type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _decision(self, run: Run, request: Envelope, code: ErrorCode, message: str, *,
                        retryable: bool = False, details: dict[str, Any] | None = None) -> None:
        """Record a decision as an ERROR from the orchestrator about `request`'s task."""
        err = ErrorInfo(code=code.value, message=message, retryable=retryable, details=details or {})
        env = answer(request, Action.ERROR, sender=self.name, error=err)
        env.recipient = self.name
        await self._emit(run, env)

    # -- conversations ------------------------------------------------------------------------

    async def run(
        self,
        capability: str,
        payload: Any,
        *,
        requester: str = "client",
        conversation_id: str | None = None,
        deadline: float | None = None,
    ) -> ConversationResult:
        """Run one conversation to its end: DONE, DEGRADED or FAILED — never an exception for agent failures.

        `deadline`: seconds from now after which the answer is useless. Every step's REQUEST carries it;
        an attempt still unanswered then ends DEADLINE_EXCEEDED (not retried) and the step falls back.
        """
        cap = self.registry.find(capability)
        data = cap.input.dump(cap.validate_input(cap.input.dump(payload))) if cap else payload
        root = new_request(
            sender=requester, recipient=self.name, capability=capability, payload=data,
            conversation_id=conversation_id,
            deadline=now_ms() + int(deadline * 1000) if deadline is not None else None,
        )
        # Claimed before the root is published: a same-named service delivered it sees the claim and waits.
        held = await self.conductors.claim_new(root.conversation_id)
        return await self.conduct(held, self._conduct(root, publish_root=True))

    async def conduct(self, held: Held, work: Coroutine[Any, Any, R]) -> R:
        """Run `work` (conducting `held`'s conversation) under its claim, renewed meanwhile.

        Returning marks the conversation finished (the final answer is in the ledger, or already was);
        raising or being cancelled releases it for another orchestrator to take at once; losing the claim
        (another took it over) cancels the work and raises ConductorLost.
        """
        job = asyncio.ensure_future(work)
        keeper = asyncio.ensure_future(self.conductors.keep(held))
        try:
            await asyncio.wait({job, keeper}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            job.cancel()
            keeper.cancel()
            await asyncio.gather(job, keeper, return_exceptions=True)
            await self.conductors.release(held)
            raise
        if not job.done():  # the claim was lost: someone else conducts it now, so we must not go on
            job.cancel()
            await asyncio.gather(job, return_exceptions=True)
            keeper.result()  # raises ConductorLost
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
        if job.cancelled() or job.exception() is not None:
            await self.conductors.release(held)
            return job.result()  # raises what the work raised
        await self.conductors.finish(held)
        return job.result()

    async def _conduct(self, root: Envelope, *, publish_root: bool) -> ConversationResult:
        run = Run(ConversationState(conversation_id=root.conversation_id), root)
        self.runs[root.conversation_id] = run
        try:
            if publish_root:
                await self._emit(run, root)
            else:
                run.fold_in(root)
            with tracing.conversation_span(root, self.name):  # under the root REQUEST's send span
                await self._emit(run, answer(root, Action.ACK, payload={"instance": self.name}))
                return await self._execute(run)
        finally:
            self.runs.pop(root.conversation_id, None)

    async def resume(self, events: Iterable[Envelope], *, claim: Held | None = None) -> ConversationResult | None:
        """Finish a conversation a previous orchestrator left open, from its envelopes in ledger order.

        Finished tasks keep their recorded results; unfinished ones are re-issued with their original
        task ids and idempotency keys (an agent that already did the work answers from its record),
        through the same rate limiter as everything else.

        Only under the conversation's claim: `claim` if the caller holds it, else it is taken — at once if
        no one holds it, after its lease if its holder fell silent. None (nothing done) if the conversation
        has ended, or if a live orchestrator conducts it.
        """
        events = list(events)
        state = fold(events) if events else None
        root = next((e for e in events if state and e.action is Action.REQUEST and e.task_id == state.root_task_id), None)
        if root is not None and root.conversation_id in self.runs:
            return None  # conducted in this process, under the claim it holds
        if state is None or root is None or root.recipient != self.name:
            if claim is not None:
                await self.conductors.release(claim)
            return None
        if state.status is not ConversationStatus.RUNNING:
            if claim is not None:
                await self.conductors.finish(claim)
            return None
        held = claim or await self.conductors.acquire(root.conversation_id, patient=False)
        if held is None:
            return None
        return await self.conduct(held, self._resume(root, events))

    async def _resume(self, root: Envelope, events: list[Envelope]) -> ConversationResult | None:
        from ledgerbus.orchestrator.recovery import conversation_events

        run = Run(ConversationState(conversation_id=root.conversation_id), root)
        for env in events:
            run.fold_in(env)
        self.runs[root.conversation_id] = run
        try:
            # Answers published between the caller's read and our registration reached no one live: read again.
            for env in await conversation_events(self.bus, root.conversation_id):
                run.fold_in(env)
            if run.state.status is not ConversationStatus.RUNNING:
                return None  # a holder we took over from had finished it, and died before saying so
            with tracing.resume_span(root, self.name):  # in the original trace, under its conversation span
                return await self._execute(run)
        finally:
            self.runs.pop(root.conversation_id, None)

    async def rerun(self, events: Iterable[Envelope], task_ids: Iterable[str], *,
                    results: dict[str, TaskState] | None = None) -> dict[str, TaskState]:
        """Run chosen tasks of a recorded conversation again, live, each as a new task `<task>_rerunN`.

        The original tasks and their results stay as recorded; a rerun carries the recorded input, a
        fresh idempotency key (so the agent really runs it instead of answering from its record) and goes
        through routing, breakers, retries and the rate limiter like any task. Returns the new tasks' states
        (also written into `results` as each finishes, so a caller keeps them if a later one raises).
        """
        events = list(events)
        state = fold(events)
        root = next((e for e in events if e.action is Action.REQUEST and e.task_id == state.root_task_id), None)
        if root is None:
            raise ConfigError("no conversation to re-run tasks of: its root REQUEST is not in the events")
        if root.conversation_id in self.runs:
            raise ConfigError(f"conversation {root.conversation_id} is running in this orchestrator")
        run = Run(ConversationState(conversation_id=root.conversation_id), root)
        for env in events:
            run.fold_in(env)
        self.runs[root.conversation_id] = run
        out: dict[str, TaskState] = results if results is not None else {}
        try:
            for task_id in task_ids:
                req = run.requests.get(task_id)
                if req is None or task_id == root.task_id:
                    known = ", ".join(t for t in run.requests if t != root.task_id) or "none"
                    raise ConfigError(f"task {task_id!r} is not a task of conversation {root.conversation_id} (tasks: {known})")
                n = 1 + sum(1 for t in run.state.tasks if t.startswith(f"{task_id}_rerun"))
                new_id = f"{task_id}_rerun{n}"
                await self._task(run, Step(new_id, req.capability, dict(req.payload)), new_id, req.capability,
                                 dict(req.payload))
                out[task_id] = run.state.tasks[new_id]
        finally:
            self.runs.pop(root.conversation_id, None)
        return out

    async def recover(self) -> list[ConversationResult]:
        """Finish every conversation addressed to this orchestrator that the ledger shows as unfinished."""
        from ledgerbus.orchestrator.recovery import open_conversations

        pending = await open_conversations(self.bus, self.name)
        pending = {cid: evs for cid, evs in pending.items() if cid not in self.runs}
        results = await asyncio.gather(*(self.resume(evs) for evs in pending.values()), return_exceptions=True)
        out: list[ConversationResult] = []
        for cid, r in zip(pending, results):
            if isinstance(r, BaseException):
                if not isinstance(r, Exception):
                    raise r  # cancelled (or interrupted): not a conversation's failure
                # One conversation that cannot be finished now must not keep the others (or a service's
                # start) from theirs; it stays open in the ledger for the next recovery.
                log.error("could not resume conversation %s: %s", cid, _why(r), exc_info=r)
            elif r is not None:
                out.append(r)
        return out

    async def serve(self, *, recover: bool = True, concurrency: int = 256,
                    stop: asyncio.Event | None = None, ready: asyncio.Event | None = None,
                    announce: bool = True) -> None:
        """Run as a service taking REQUESTs addressed to this orchestrator (see `orchestrator.service`)."""
        from ledgerbus.orchestrator.service import serve

        await serve(self, recover=recover, concurrency=concurrency, stop=stop, ready=ready, announce=announce)

    async def _execute(self, run: Run) -> ConversationResult:
        root = run.root
        try:
            plan = self.decomposer.plan(root.capability, root.payload)
        except Exception as exc:  # the decomposer is user code: its bug fails this conversation only
            if not isinstance(exc, LedgerbusError):
                log.exception("the decomposer failed to plan %s", root.capability)
            return await self._finish(run, None, [], Outcome.FAILED, [f"could not plan {root.capability}: {_why(exc)}"])
        if (note := plan_note(root, plan, self.name)) is not None and note.id not in run.applied:  # resumed: recorded
            await self._emit(run, note)  # the plan's edges, for whoever reads the ledger (plannote.py)
        results: dict[str, StepResult] = {}
        running: dict[str, asyncio.Task[StepResult]] = {}
        ctx_results: dict[str, Any] = {}

        # Steps the ledger already shows as done (a resumed conversation) are not run again, whether
        # their own task or one of their fallback capability's tasks (`<task>_fb1`, `_fb1_fb2`…) did it.
        for step in plan.order():
            task_id = step_task_id(root.conversation_id, step.id)
            first = run.state.tasks.get(task_id)
            for depth in range(_MAX_FALLBACK_DEPTH + 1):
                t = run.state.tasks.get(task_id)
                if t is not None and t.status is TaskStatus.DONE:
                    res = results[step.id] = _recorded(step, t)
                    if depth:
                        res.fallback, res.error = True, res.error or (first.error if first else None)
                    ctx_results[step.id] = t.result
                    break
                task_id = fallback_task_id(task_id, depth + 1)

        try:
            while True:
                done = {k for k, r in results.items() if r.ok}
                failed = {k for k, r in results.items() if not r.ok}
                if plan.finished(done, failed) and not running:
                    break
                for step in plan.ready(done, set(running), failed):
                    ctx = PlanContext(root.payload, dict(ctx_results))
                    running[step.id] = asyncio.create_task(self._run_step(run, plan, step, ctx))
                if not running:
                    break  # everything left is blocked by a failed dependency
                finished, _ = await asyncio.wait(running.values(), return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    res = task.result()
                    results[res.step.id] = res
                    running.pop(res.step.id)
                    if res.ok:
                        ctx_results[res.step.id] = res.payload
        finally:
            # Cancelled, or failed in the orchestrator: steps still running must not go on sending
            # REQUESTs and retries for a conversation nobody conducts any more.
            for task in running.values():
                task.cancel()
            await asyncio.gather(*running.values(), return_exceptions=True)

        done = {k for k, r in results.items() if r.ok}
        failed = {k for k, r in results.items() if not r.ok}
        fallbacks = {k for k, r in results.items() if r.ok and r.fallback}
        outcome = plan.outcome(done, failed, fallbacks)
        # A required step failed but others produced something: hand back what exists, say what is missing.
        if outcome is Outcome.FAILED and done:
            outcome = Outcome.DEGRADED
        reports = [self._report(plan, s, results.get(s.id), root) for s in plan.order()]
        reasons = [self._reason(r) for r in reports if r.status != "DONE" or r.fallback]
        final = None
        if outcome is not Outcome.FAILED:
            assemble = getattr(self.decomposer, "assemble", None)
            ctx = PlanContext(root.payload, dict(ctx_results))
            try:
                final = assemble(root.capability, ctx, failed) if assemble else dict(ctx_results)
            except Exception as exc:  # user code: hand back the steps' results as they are, and say why
                log.exception("the decomposer failed to assemble %s", root.capability)
                final, outcome = dict(ctx_results), Outcome.DEGRADED
                reasons.append(f"could not assemble the result of {root.capability}: {_why(exc)}; "
                               "the result holds each step's output instead")
        return await self._finish(run, final, reports, outcome, reasons)

    @staticmethod
    def _report(plan: Plan, step: Step, res: StepResult | None, root: Envelope) -> StepReport:
        if res is None:
            return StepReport(step=step.id, task_id=step_task_id(root.conversation_id, step.id),
                              capability=step.capability, status="SKIPPED",
                              error=ErrorInfo(code=ErrorCode.DEPENDENCY_FAILED.value,
                                              message=f"not run: a step it depends on ({', '.join(step.depends_on)}) failed"))
        return StepReport(step=step.id, task_id=res.task_id, capability=step.capability, agent=res.agent,
                          status="DONE" if res.ok else "FAILED", attempts=res.attempts,
                          fallback=res.fallback, error=res.error)

    @staticmethod
    def _reason(r: StepReport) -> str:
        why = f"{r.error.code}: {r.error.message}" if r.error else "no reason recorded"
        if r.fallback:
            return f"step {r.step} ({r.capability}) used its fallback after {why}"
        if r.status == "SKIPPED":
            return f"step {r.step} ({r.capability}) skipped: {why}"
        return f"step {r.step} ({r.capability}) failed after {r.attempts} attempt(s): {why}"

    async def _finish(self, run: Run, final: dict[str, Any] | None, reports: list[StepReport],
                      outcome: Outcome, reasons: list[str]) -> ConversationResult:
        root = run.root
        payload = ConversationOutcome(status=outcome.value, result=final, steps=reports, reasons=reasons)
        body: dict[str, Any] = _to_builtins(payload)
        if outcome is Outcome.FAILED:
            env = answer(root, Action.ERROR, error=ErrorInfo(
                code=ErrorCode.DEPENDENCY_FAILED.value, message="; ".join(reasons) or "the conversation failed",
                details={"outcome": body}))
        else:
            err = None
            if outcome is Outcome.DEGRADED:
                err = ErrorInfo(code="DEGRADED", message="; ".join(reasons), details={})
            env = answer(root, Action.RESPONSE, payload=body, error=err)
        await self._emit(run, env)
        return ConversationResult(root.conversation_id, run.state.status, final, payload, run.state)

    # -- one step -----------------------------------------------------------------------------

    async def _run_step(self, run: Run, plan: Plan, step: Step, ctx: PlanContext) -> StepResult:
        task_id = step_task_id(run.root.conversation_id, step.id)
        try:
            payload = plan.build_input(step, ctx)
        except LedgerbusError as exc:
            return StepResult(step, task_id, False, error=ErrorInfo(code=ErrorCode.DEPENDENCY_FAILED.value, message=str(exc)))
        except Exception as exc:  # the step's input builder is user code: its bug fails this step only
            log.exception("building the input of step %s failed", step.id)
            return StepResult(step, task_id, False, error=ErrorInfo(
                code=ErrorCode.INTERNAL.value, message=f"building the input of step {step.id} raised {_why(exc)}"))
        try:
            return await self._task(run, step, task_id, step.capability, payload)
        except Exception as exc:  # isolation: a bug in one step's plumbing fails that step, not the conversation
            log.exception("step %s failed in the orchestrator", step.id)
            return StepResult(step, task_id, False, error=ErrorInfo(code=ErrorCode.INTERNAL.value, message=f"{type(exc).__name__}: {exc}"))

    async def _task(self, run: Run, step: Step, task_id: str, capability: str, payload: dict[str, Any],
                    *, fallback_depth: int = 0) -> StepResult:
        existing = run.state.tasks.get(task_id)
        attempt = 1
        last_error: ErrorInfo | None = None
        agent: str | None = None
        prev_request: Envelope | None = None
        policy = self.policies.for_task(capability)
        inflight = run.requests.get(task_id)
        if existing is not None and existing.status is TaskStatus.DONE:
            return _recorded(step, existing)  # resumed: answered before (a fallback task re-entered)
        if existing is not None and existing.attempt:
            attempt = existing.attempt + 1
            if existing.status in (TaskStatus.SENT, TaskStatus.ACKED) and inflight is not None:
                # Resumed while this attempt was in flight: its agent may still answer. Watch it before
                # sending another, so a handler that is running is not started a second time.
                agent, prev_request = inflight.recipient, inflight
                policy = self.policies.for_task(capability, agent)
                last_error = await self._attempt(run, inflight, policy, publish=False)
                if last_error is None:
                    return self._done(run, step, task_id, agent)
                if not self._after_failure(agent, last_error, policy, inflight.attempt):
                    return await self._give_up(run, step, task_id, capability, payload, policy, agent,
                                               prev_request, last_error, fallback_depth)
                attempt = inflight.attempt + 1
            elif existing.retry_pending and inflight is not None:
                attempt = inflight.attempt + 1
            elif existing.finished and existing.error is not None and inflight is not None:
                # Failed before the resume. Retry only if the policy would have: otherwise the predecessor
                # was giving up on it, so do what it was about to (the fallback, or fail the step).
                err, agent = existing.error, inflight.recipient
                policy = self.policies.for_task(capability, agent)
                if not policy.retry.should_retry(inflight.attempt, err.retryable or err.code in RETRYABLE_CODES):
                    return await self._give_up(run, step, task_id, capability, payload, policy, agent,
                                               inflight, err, fallback_depth)
        while True:
            agent, skipped = await self.router.route(capability, self.breakers)
            policy = self.policies.for_task(capability, agent)
            request = new_request(
                sender=self.name, recipient=agent or (skipped[0] if skipped else capability.split(".")[0]),
                capability=capability, payload=payload, conversation_id=run.root.conversation_id,
                task_id=task_id, attempt=attempt, idempotency_key=task_id, causation_id=run.root.id,
                deadline=run.root.deadline,  # the conversation's: past it, no step's answer is of use
            )
            if agent is None:
                last_error = ErrorInfo(code=ErrorCode.BREAKER_OPEN.value,
                                       message=f"circuit breaker open for {', '.join(skipped)}; request not sent",
                                       details={"agents": skipped})
                await self._decision(run, prev_request or request, ErrorCode.BREAKER_OPEN, last_error.message,
                                     details={"agents": skipped, "retryAfter": round(max(self.breakers.get(a).retry_after() for a in skipped), 3)})
                break
            try:
                try:
                    cap = self.registry.find(capability)
                    if cap is not None:
                        cap.validate_input(payload)
                except InvalidMessage as exc:
                    self.breakers.get(agent).release()
                    last_error = ErrorInfo(code=exc.code, message=exc.reason, details={"path": exc.path} if exc.path else {})
                    await self._decision(run, request, ErrorCode.INVALID_MESSAGE, exc.reason)
                    break
                waited = await self.limiter.acquire(agent)
                if waited > 0.05:
                    await self._decision(run, request, ErrorCode.RATE_LIMITED,
                                         f"waited {waited:.2f}s for the rate limit of {agent}", details={"waited": round(waited, 4)})
                prev_request = request
                last_error = await self._attempt_when_free(run, request, policy)
            except BaseException:
                # Cancelled, out of budget, or the ledger unreachable: the outcome is unknown, so give a
                # half-open breaker's probe slot back rather than leave the agent type shut for good.
                self.breakers.get(agent).release()
                raise
            if last_error is None:
                self.breakers.get(agent).record_success()
                return self._done(run, step, task_id, agent)
            if not self._after_failure(agent, last_error, policy, attempt):
                break
            delay = policy.retry.next_delay(attempt, self.rng)
            await self._decision(run, request, ErrorCode.RETRY_SCHEDULED,
                                 f"attempt {attempt} failed ({last_error.code}); attempt {attempt + 1} in {delay:.3f}s",
                                 details={"delay": round(delay, 4), "nextAttempt": attempt + 1, "cause": last_error.code})
            if await self._backoff(run, task_id, delay):
                return self._done(run, step, task_id, agent)  # the failed attempt's late answer came meanwhile
            attempt += 1
        return await self._give_up(run, step, task_id, capability, payload, policy, agent, prev_request,
                                   last_error, fallback_depth)

    @staticmethod
    async def _backoff(run: Run, task_id: str, delay: float) -> bool:
        """Wait out a retry's backoff; True as soon as the task is DONE instead (tasks are idempotent, so a
        late RESPONSE to the attempt that failed is a valid answer, and the retry is not sent)."""
        loop = asyncio.get_running_loop()
        until = loop.time() + delay
        wake = run.wakeups.setdefault(task_id, asyncio.Event())
        while run.state.tasks[task_id].status is not TaskStatus.DONE:
            left = until - loop.time()
            if left <= 0:
                return False
            wake.clear()
            await _woken(wake, left)
        return True

    def _done(self, run: Run, step: Step, task_id: str, agent: str | None) -> StepResult:
        t = run.state.tasks[task_id]
        return StepResult(step, task_id, True, t.result, agent, False, None, t.attempts)

    def _after_failure(self, agent: str, err: ErrorInfo, policy: TaskPolicy, attempt: int) -> bool:
        """Charge the breaker for the failure; whether to try again."""
        breaker = self.breakers.get(agent)
        # An outage of our own connection (disconnect, reconnect, failed publish) makes agents look silent
        # for up to a stall window afterwards: those failures are not the agents' to pay for.
        window = policy.stall_after + policy.receipt_timeout + 1.0
        ours = not self.bus.is_connected or time.monotonic() - self.bus.trouble_at < window
        if err.code in _AGENT_FAULTS and not ours:
            breaker.record_failure()
        else:
            breaker.release()  # the agent answered; the request was the problem
        return policy.retry.should_retry(attempt, err.retryable or err.code in RETRYABLE_CODES)

    async def _give_up(self, run: Run, step: Step, task_id: str, capability: str, payload: dict[str, Any],
                       policy: TaskPolicy, agent: str | None, prev_request: Envelope | None,
                       last_error: ErrorInfo | None, fallback_depth: int) -> StepResult:
        attempts = run.state.tasks[task_id].attempts if task_id in run.state.tasks else 0
        fb = policy.fallback
        if isinstance(fb, FallbackValue):
            base = prev_request or new_request(sender=self.name, recipient=self.name, capability=capability,
                                               payload=payload, conversation_id=run.root.conversation_id,
                                               task_id=task_id, idempotency_key=task_id)
            env = answer(base, Action.RESPONSE, sender=self.name, payload=fb.as_payload(), error=ErrorInfo(
                code=ErrorCode.FALLBACK_USED.value,
                message=f"fallback value used after {last_error.code if last_error else 'failure'}",
                details={"cause": _to_builtins(last_error) if last_error else None}))
            env.recipient = self.name
            await self._emit(run, env)
            return StepResult(step, task_id, True, fb.as_payload(), agent, True, last_error, attempts)
        if isinstance(fb, FallbackCapability) and fallback_depth < _MAX_FALLBACK_DEPTH:
            res = await self._task(run, step, fallback_task_id(task_id, fallback_depth + 1), fb.capability, payload,
                                   fallback_depth=fallback_depth + 1)
            res.fallback = res.ok
            res.error = res.error or last_error
            return res
        return StepResult(step, task_id, False, None, agent, False, last_error, attempts)

    async def _attempt_when_free(self, run: Run, request: Envelope, policy: TaskPolicy) -> ErrorInfo | None:
        """`_attempt`, once the agent type has a free slot (backpressure): a request the type cannot take
        yet waits here, not in its queue, so its receipt window starts when an instance can take it."""
        agent = request.recipient
        wait = None if request.deadline is None else max((request.deadline - self.clock()) / 1000, 0.0)
        await self.capacity.acquire(agent, self.router.capacity(agent), timeout=wait)
        try:
            return await self._attempt(run, request, policy)
        finally:
            self.capacity.release(agent)

    async def _attempt(self, run: Run, request: Envelope, policy: TaskPolicy, *, publish: bool = True) -> ErrorInfo | None:
        """Send one attempt (or, resuming, watch one already sent): None on RESPONSE, else why it failed.

        Its windows run on `self.clock`, from when this orchestrator sent the request and saw the answers.
        """
        task_id = request.task_id
        wake = run.wakeups.setdefault(task_id, asyncio.Event())
        wake.clear()
        seq: int | None = None
        if publish:
            request.timestamp = now_ms()  # the send time, after any rate-limit wait
            seq = getattr(await self._emit(run, request), "seq", None)
            self.sent_requests += 1
        window = ReceiptWindow(run.state.tasks[task_id].sent_at or self.clock())
        while True:
            task = run.state.tasks[task_id]
            if task.status is TaskStatus.DONE:
                return None
            if task.status is not TaskStatus.SENT and task.status is not TaskStatus.ACKED and task.error is not None \
                    and task.attempt == request.attempt:
                return task.error  # the agent's ERROR, or a stall/timeout already recorded for this attempt
            now = self.clock()
            code = check_task(task, now, policy, receipt_since=window.since)
            if code == ErrorCode.NO_RECEIPT.value and await self._receipt_pending(run, request, window, seq):
                continue
            if code is not None:
                silent = now - (task.last_activity_at or task.sent_at or now)
                msg = {
                    ErrorCode.NO_RECEIPT.value: f"no ACK from {request.recipient} within {policy.receipt_timeout}s",
                    ErrorCode.STALLED.value: f"{request.recipient} ACKed, then silent for {silent / 1000:.1f}s (stall window {policy.stall_after}s)",
                    ErrorCode.TIMED_OUT.value: f"no answer from {request.recipient} within {policy.timeout}s",
                    ErrorCode.DEADLINE_EXCEEDED.value: f"no answer from {request.recipient} before the request's deadline",
                }[code]
                err = ErrorInfo(code=code, message=msg, retryable=code in RETRYABLE_CODES,
                                details={"agent": request.recipient, "attempt": request.attempt})
                await self._decision(run, request, ErrorCode(code), msg, retryable=err.retryable, details=err.details)
                return err
            due = next_check_ms(task, policy, receipt_since=window.since)
            await _woken(wake, max((due - self.clock()) / 1000, 0.001) if due is not None else 1.0)
            wake.clear()

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


def _may_pass(exc: Exception) -> bool:
    """Whether a failed publish is worth repeating: a timeout, an outage, a leader election may pass;
    an envelope the codec refuses (too large…) or a connection closed by us will not."""
    if isinstance(exc, ConnectionClosed):
        return False
    return isinstance(exc, PublishError) or not isinstance(exc, LedgerbusError)


async def _woken(wake: asyncio.Event, timeout: float) -> None:
    """Wait until `wake` is set (an answer was folded in for the task) or `timeout` seconds pass."""
    try:
        await asyncio.wait_for(wake.wait(), timeout)
    except asyncio.TimeoutError:
        pass


def _recorded(step: Step, t: TaskState) -> StepResult:
    """A step's result as the ledger recorded it (a resumed conversation does not run it again)."""
    return StepResult(step, t.task_id, True, t.result, t.agent, t.fallback, t.error, t.attempts)


def _why(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, LedgerbusError) else f"{type(exc).__name__}: {exc}"


def _to_builtins(value: Any) -> Any:
    import msgspec

    return msgspec.to_builtins(value)
