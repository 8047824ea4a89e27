"""Scheduling a plan's steps: each as soon as its dependencies allow, each in its own asyncio task."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from ledgerbus.eventstore.fold import ConversationState, TaskStatus
from ledgerbus.orchestrator.inflight import StepResult, fallback_task_id, step_task_id
from ledgerbus.orchestrator.plan import Plan, PlanContext, Step
from ledgerbus.orchestrator.supervisor import MAX_FALLBACK_DEPTH, recorded

RunStep = Callable[[Step, PlanContext], Coroutine[Any, Any, StepResult]]


def split(results: Mapping[str, StepResult]) -> tuple[set[str], set[str]]:
    """The ids of the steps that succeeded, and of those that failed."""
    return {k for k, r in results.items() if r.ok}, {k for k, r in results.items() if not r.ok}


def outputs(results: Mapping[str, StepResult]) -> dict[str, Any]:
    """What the steps that succeeded produced, by step id: the input of later steps and of the result."""
    return {k: r.payload for k, r in results.items() if r.ok}


def recorded_results(plan: Plan, state: ConversationState) -> dict[str, StepResult]:
    """Steps the ledger already shows as done (a resumed conversation): they are not run again, whether
    their own task or one of their fallback capability's tasks (`<task>_fb1`, `_fb1_fb2`…) did it."""
    results: dict[str, StepResult] = {}
    for step in plan.order():
        task_id = step_task_id(state.conversation_id, step.id)
        first = state.tasks.get(task_id)
        for depth in range(MAX_FALLBACK_DEPTH + 1):
            t = state.tasks.get(task_id)
            if t is not None and t.status is TaskStatus.DONE:
                res = results[step.id] = recorded(step, t)
                if depth:
                    res.fallback, res.error = True, res.error or (first.error if first else None)
                break
            task_id = fallback_task_id(task_id, depth + 1)
    return results


async def run_dag(plan: Plan, request: Any, results: dict[str, StepResult], run_step: RunStep) -> None:
    """Run every step the plan still needs, filling `results`, until the plan is finished or blocked."""
    running: dict[str, asyncio.Task[StepResult]] = {}
    try:
        while True:
            done, failed = split(results)
            if plan.finished(done, failed) and not running:
                break
            for step in plan.ready(done, set(running), failed):
                running[step.id] = asyncio.create_task(run_step(step, PlanContext(request, outputs(results))))
            if not running:
                break  # everything left is blocked by a failed dependency
            finished, _ = await asyncio.wait(running.values(), return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                res = task.result()
                results[res.step.id] = res
                running.pop(res.step.id)
    finally:
        # Cancelled, or failed in the orchestrator: steps still running must not go on sending
        # REQUESTs and retries for a conversation nobody conducts any more.
        for task in running.values():
            task.cancel()
        await asyncio.gather(*running.values(), return_exceptions=True)
