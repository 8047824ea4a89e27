"""A conversation in flight: its folded state, its tasks' wake-ups, and what running it returns."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ledgerbus.eventstore.fold import ConversationState, ConversationStatus, apply, counted, fold
from ledgerbus.orchestrator.outcome import ConversationOutcome
from ledgerbus.orchestrator.plan import Step
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import Envelope, ErrorInfo


@dataclass
class ConversationResult:
    """What `Orchestrator.run` returns: never an exception for an agent's failure."""

    conversation_id: str
    status: ConversationStatus
    result: dict[str, Any] | None
    outcome: ConversationOutcome
    state: ConversationState
    #: Exceptions in the orchestrator that failed steps (each step's reason names it too), e.g. a
    #: replay's spent request budget (BudgetExhausted): told apart by type, not by the reasons' text.
    raised: list[Exception] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status is ConversationStatus.DONE


@dataclass
class StepResult:
    step: Step
    task_id: str
    ok: bool
    payload: dict[str, Any] | None = None
    agent: str | None = None
    fallback: bool = False
    error: ErrorInfo | None = None
    attempts: int = 0
    raised: Exception | None = None  # what failed the step in the orchestrator itself, if anything


@dataclass
class Run:
    """One conversation in flight: its folded state and a wake-up per task."""

    state: ConversationState
    root: Envelope
    wakeups: dict[str, asyncio.Event] = field(default_factory=dict)
    applied: set[str] = field(default_factory=set)  # envelope ids folded so far (ours when sent, others when heard)
    requests: dict[str, Envelope] = field(default_factory=dict)  # task id -> its latest REQUEST

    def fold_in(self, env: Envelope, observed_at: int | None = None) -> bool:
        """Fold `env` once; `observed_at`: when the orchestrator sent or received it (its clock)."""
        if env.id in self.applied:
            return False
        self.applied.add(env.id)
        apply(self.state, env, 0, observed_at)
        if env.action is Action.REQUEST and counted(self.state, env.id):
            self.requests[env.task_id] = env
        return True

    def wake(self, task_id: str) -> None:
        ev = self.wakeups.get(task_id)
        if ev is not None:
            ev.set()


def step_task_id(conversation_id: str, step_id: str) -> str:
    """Deterministic, so a recovering orchestrator finds the tasks its predecessor started."""
    return f"{conversation_id}_{step_id}"


def fallback_task_id(task_id: str, depth: int) -> str:
    """The task of a failed task's fallback capability, `depth` levels down (`<task>_fb1`, `_fb1_fb2`…):
    deterministic like step_task_id, so a resume finds the fallbacks already answered."""
    return f"{task_id}_fb{depth}"


def root_request(events: Sequence[Envelope]) -> tuple[Envelope | None, ConversationState | None]:
    """A recorded conversation's root REQUEST and its folded state (None, None for no events)."""
    if not events:
        return None, None
    state = fold(events)
    root = next((e for e in events if e.action is Action.REQUEST and e.task_id == state.root_task_id), None)
    return root, state


def rebuild(root: Envelope, events: Iterable[Envelope]) -> Run:
    """The in-flight conversation `root` started, from its envelopes in ledger order: the one way a
    conversation is picked up again (resume, recover, a service's delivery, a rerun of some tasks)."""
    run = Run(ConversationState(conversation_id=root.conversation_id), root)
    for env in events:
        run.fold_in(env)
    return run
