"""Aggregating a conversation's step results: a report per step, and why the ones not plainly DONE are not."""

from __future__ import annotations

from ledgerbus.orchestrator.inflight import StepResult, step_task_id
from ledgerbus.orchestrator.outcome import StepReport
from ledgerbus.orchestrator.plan import Step
from ledgerbus.schemas.codes import ErrorCode
from ledgerbus.schemas.envelope import ErrorInfo


def step_report(step: Step, res: StepResult | None, conversation_id: str) -> StepReport:
    """How a step went; a step with no result was never run (a dependency failed)."""
    if res is None:
        return StepReport(step=step.id, task_id=step_task_id(conversation_id, step.id),
                          capability=step.capability, status="SKIPPED",
                          error=ErrorInfo(code=ErrorCode.DEPENDENCY_FAILED.value,
                                          message=f"not run: a step it depends on ({', '.join(step.depends_on)}) failed"))
    return StepReport(step=step.id, task_id=res.task_id, capability=step.capability, agent=res.agent,
                      status="DONE" if res.ok else "FAILED", attempts=res.attempts,
                      fallback=res.fallback, error=res.error)


def reason(r: StepReport) -> str:
    """Why a step is not plainly DONE, in one line of the conversation's reasons."""
    why = f"{r.error.code}: {r.error.message}" if r.error else "no reason recorded"
    if r.fallback:
        return f"step {r.step} ({r.capability}) used its fallback after {why}"
    if r.status == "SKIPPED":
        return f"step {r.step} ({r.capability}) skipped: {why}"
    return f"step {r.step} ({r.capability}) failed after {r.attempts} attempt(s): {why}"
