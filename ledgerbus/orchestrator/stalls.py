"""Stall detection as a pure function of the folded state and a clock.

The live orchestrator and `ledgerbus stalls`/replay call the same function, so "stalled" means the
same thing whether it is decided now or reconstructed from a recorded ledger.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ledgerbus.eventstore.fold import ConversationState, TaskState, TaskStatus
from ledgerbus.orchestrator.policy import TaskPolicy
from ledgerbus.schemas.codes import ErrorCode


@dataclass(frozen=True)
class Stall:
    conversation_id: str
    task_id: str
    agent: str
    capability: str
    code: str  # NO_RECEIPT, STALLED, TIMED_OUT or DEADLINE_EXCEEDED
    silent_ms: int  # since the last sign of life (the REQUEST, the ACK or the last PROGRESS)
    attempt: int


def check_task(task: TaskState, now_ms: int, policy: TaskPolicy) -> str | None:
    """Which limit, if any, an unfinished task has passed at `now_ms`."""
    if task.status not in (TaskStatus.SENT, TaskStatus.ACKED) or task.sent_at is None:
        return None
    if now_ms - task.sent_at >= policy.timeout * 1000:
        return ErrorCode.TIMED_OUT.value
    if task.deadline is not None and now_ms > task.deadline:
        return ErrorCode.DEADLINE_EXCEEDED.value
    if task.status is TaskStatus.SENT and now_ms - task.sent_at >= policy.receipt_timeout * 1000:
        return ErrorCode.NO_RECEIPT.value
    if task.status is TaskStatus.ACKED:
        last = task.last_activity_at or task.acked_at or task.sent_at
        if now_ms - last >= policy.stall_after * 1000:
            return ErrorCode.STALLED.value
    return None


def next_check_ms(task: TaskState, policy: TaskPolicy) -> int | None:
    """The earliest moment `check_task` could change its answer for this task (for timers)."""
    if task.status not in (TaskStatus.SENT, TaskStatus.ACKED) or task.sent_at is None:
        return None
    times = [task.sent_at + int(policy.timeout * 1000)]
    if task.deadline is not None:
        times.append(task.deadline + 1)
    if task.status is TaskStatus.SENT:
        times.append(task.sent_at + int(policy.receipt_timeout * 1000))
    else:
        last = task.last_activity_at or task.acked_at or task.sent_at
        times.append(last + int(policy.stall_after * 1000))
    return min(times)


def find_stalls(
    states: Iterable[ConversationState],
    now_ms: int,
    policy_for: Callable[[str, str], TaskPolicy],
) -> list[Stall]:
    """Every unfinished task past a limit, over any number of conversations."""
    out: list[Stall] = []
    for st in states:
        for task in st.tasks.values():
            code = check_task(task, now_ms, policy_for(task.capability, task.agent))
            if code is None:
                continue
            last = task.last_activity_at or task.sent_at or now_ms
            out.append(Stall(st.conversation_id, task.task_id, task.agent, task.capability, code, now_ms - last, task.attempt))
    return out
