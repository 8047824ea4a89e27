"""The conductor of one conversation: plan it, schedule its steps, aggregate their results, finish it.

Each step's task is seen through by the supervisor; the conductor decides what runs when, and what
the conversation returns: DONE, DEGRADED (with what succeeded and why the rest failed) or FAILED.
(Who may conduct a conversation at all is `conductors.py`, the claims.)
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

import msgspec

from ledgerbus.errors import ConfigError, LedgerbusError
from ledgerbus.eventstore.fold import ConversationState, ConversationStatus, TaskState
from ledgerbus.orchestrator.decisions import Emitter
from ledgerbus.orchestrator.inflight import ConversationResult, Run, StepResult, rebuild, step_task_id
from ledgerbus.orchestrator.outcome import ConversationOutcome, StepReport
from ledgerbus.orchestrator.plan import Decomposer, Plan, PlanContext, Step
from ledgerbus.orchestrator.plannote import plan_note
from ledgerbus.orchestrator.report import reason, step_report
from ledgerbus.orchestrator.schedule import RunStep, outputs, recorded_results, run_dag, split
from ledgerbus.orchestrator.supervisor import Supervisor, TaskCall
from ledgerbus.schemas.codes import Action, ErrorCode
from ledgerbus.schemas.envelope import Envelope, ErrorInfo, answer
from ledgerbus.tracing import instrument as tracing

log = logging.getLogger("ledgerbus.orchestrator")

#: Reads a conversation's envelopes back from the ledger, in ledger order.
ReadEvents = Callable[[str], Awaitable[list[Envelope]]]


class Conductor:
    def __init__(self, *, name: str, decomposer: Decomposer, supervisor: Supervisor, emitter: Emitter,
                 read_events: ReadEvents) -> None:
        self.name = name
        self.decomposer = decomposer
        self.supervisor = supervisor
        self.emitter = emitter
        self.read_events = read_events
        self.runs: dict[str, Run] = {}  # conversations this process conducts now, by id

    async def start(self, root: Envelope, *, publish_root: bool) -> ConversationResult:
        """Conduct a new conversation: its root REQUEST published here, or delivered to us already."""
        run = Run(ConversationState(conversation_id=root.conversation_id), root) if publish_root else rebuild(root, [root])
        self.runs[root.conversation_id] = run
        try:
            if publish_root:
                await self.emitter.emit(run, root)
            with tracing.conversation_span(root, self.name):  # under the root REQUEST's send span
                await self.emitter.emit(run, answer(root, Action.ACK, payload={"instance": self.name}))
                return await self.execute(run)
        finally:
            self.runs.pop(root.conversation_id, None)

    async def resume(self, root: Envelope, events: list[Envelope]) -> ConversationResult | None:
        """Finish a conversation from its envelopes; None if it turns out to have ended meanwhile."""
        run = rebuild(root, events)
        self.runs[root.conversation_id] = run
        try:
            # Answers published between the caller's read and our registration reached no one live: read again.
            for env in await self.read_events(root.conversation_id):
                run.fold_in(env)
            if run.state.status is not ConversationStatus.RUNNING:
                return None  # a holder we took over from had finished it, and died before saying so
            with tracing.resume_span(root, self.name):  # in the original trace, under its conversation span
                return await self.execute(run)
        finally:
            self.runs.pop(root.conversation_id, None)

    async def rerun(self, root: Envelope, events: list[Envelope], task_ids: Iterable[str],
                    out: dict[str, TaskState]) -> None:
        """Run chosen tasks of a recorded conversation again as `<task>_rerunN`, filling `out` as each ends."""
        if root.conversation_id in self.runs:
            raise ConfigError(f"conversation {root.conversation_id} is running in this orchestrator")
        run = rebuild(root, events)
        self.runs[root.conversation_id] = run
        try:
            for task_id in task_ids:
                req = run.requests.get(task_id)
                if req is None or task_id == root.task_id:
                    known = ", ".join(t for t in run.requests if t != root.task_id) or "none"
                    raise ConfigError(f"task {task_id!r} is not a task of conversation {root.conversation_id} (tasks: {known})")
                n = 1 + sum(1 for t in run.state.tasks if t.startswith(f"{task_id}_rerun"))
                new_id = f"{task_id}_rerun{n}"
                await self.supervisor.task(TaskCall(run, Step(new_id, req.capability, dict(req.payload)), new_id,
                                                    req.capability, dict(req.payload)))
                out[task_id] = run.state.tasks[new_id]
        finally:
            self.runs.pop(root.conversation_id, None)

    async def execute(self, run: Run) -> ConversationResult:
        """Plan the conversation, run the steps it still needs, and finish it with their outcome."""
        root = run.root
        try:
            plan = self.decomposer.plan(root.capability, root.payload)
        except Exception as exc:  # the decomposer is user code: its bug fails this conversation only
            if not isinstance(exc, LedgerbusError):
                log.exception("the decomposer failed to plan %s", root.capability)
            return await self.finish(run, None, [], ConversationStatus.FAILED, [f"could not plan {root.capability}: {why(exc)}"])
        if (note := plan_note(root, plan, self.name)) is not None and note.id not in run.applied:  # resumed: recorded
            await self.emitter.emit(run, note)  # the plan's edges, for whoever reads the ledger (plannote.py)
        results = recorded_results(plan, run.state)
        await run_dag(plan, root.payload, results, self._step_runner(run, plan))
        return await self._aggregate(run, plan, results)

    def _step_runner(self, run: Run, plan: Plan) -> RunStep:
        def start(step: Step, ctx: PlanContext) -> Coroutine[Any, Any, StepResult]:
            return self._run_step(run, plan, step, ctx)
        return start

    async def _aggregate(self, run: Run, plan: Plan, results: dict[str, StepResult]) -> ConversationResult:
        root = run.root
        done, failed = split(results)
        fallbacks = {k for k, r in results.items() if r.ok and r.fallback}
        outcome = plan.outcome(done, failed, fallbacks)
        # A required step failed but others produced something: hand back what exists, say what is missing.
        if outcome is ConversationStatus.FAILED and done:
            outcome = ConversationStatus.DEGRADED
        reports = [step_report(s, results.get(s.id), root.conversation_id) for s in plan.order()]
        reasons = [reason(r) for r in reports if r.status != "DONE" or r.fallback]
        final = None
        if outcome is not ConversationStatus.FAILED:
            final, outcome = self._assemble(root, outputs(results), failed, outcome, reasons)
        raised = [r.raised for r in results.values() if r.raised is not None]
        return await self.finish(run, final, reports, outcome, reasons, raised)

    def _assemble(self, root: Envelope, produced: dict[str, Any], failed: set[str], outcome: ConversationStatus,
                  reasons: list[str]) -> tuple[dict[str, Any] | None, ConversationStatus]:
        """The conversation's result from its steps' (the decomposer's `assemble`, if it has one)."""
        assemble = getattr(self.decomposer, "assemble", None)
        ctx = PlanContext(root.payload, dict(produced))
        try:
            return (assemble(root.capability, ctx, failed) if assemble else dict(produced)), outcome
        except Exception as exc:  # user code: hand back the steps' results as they are, and say why
            log.exception("the decomposer failed to assemble %s", root.capability)
            reasons.append(f"could not assemble the result of {root.capability}: {why(exc)}; "
                           "the result holds each step's output instead")
            return dict(produced), ConversationStatus.DEGRADED

    async def finish(self, run: Run, final: dict[str, Any] | None, reports: list[StepReport],
                     outcome: ConversationStatus, reasons: list[str], raised: list[Exception] | None = None) -> ConversationResult:
        """Answer the root REQUEST with the conversation's outcome: its end in the ledger."""
        root = run.root
        payload = ConversationOutcome(status=outcome, result=final, steps=reports, reasons=reasons)
        body: dict[str, Any] = msgspec.to_builtins(payload)
        if outcome is ConversationStatus.FAILED:
            env = answer(root, Action.ERROR, error=ErrorInfo(
                code=ErrorCode.DEPENDENCY_FAILED.value, message="; ".join(reasons) or "the conversation failed",
                details={"outcome": body}))
        else:
            err = None
            if outcome is ConversationStatus.DEGRADED:
                err = ErrorInfo(code="DEGRADED", message="; ".join(reasons), details={})
            env = answer(root, Action.RESPONSE, payload=body, error=err)
        await self.emitter.emit(run, env)
        return ConversationResult(root.conversation_id, run.state.status, final, payload, run.state, raised or [])

    async def _run_step(self, run: Run, plan: Plan, step: Step, ctx: PlanContext) -> StepResult:
        task_id = step_task_id(run.root.conversation_id, step.id)
        try:
            payload = plan.build_input(step, ctx)
        except LedgerbusError as exc:
            return StepResult(step, task_id, False, error=ErrorInfo(code=ErrorCode.DEPENDENCY_FAILED.value, message=str(exc)))
        except Exception as exc:  # the step's input builder is user code: its bug fails this step only
            log.exception("building the input of step %s failed", step.id)
            return StepResult(step, task_id, False, error=ErrorInfo(
                code=ErrorCode.INTERNAL.value, message=f"building the input of step {step.id} raised {why(exc)}"))
        try:
            return await self.supervisor.task(TaskCall(run, step, task_id, step.capability, payload))
        except Exception as exc:  # isolation: a bug in one step's plumbing fails that step, not the conversation
            log.exception("step %s failed in the orchestrator", step.id)
            return StepResult(step, task_id, False, raised=exc, error=ErrorInfo(
                code=ErrorCode.INTERNAL.value, message=f"{type(exc).__name__}: {exc}"))


def why(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, LedgerbusError) else f"{type(exc).__name__}: {exc}"
