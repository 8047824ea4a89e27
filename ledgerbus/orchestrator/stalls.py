"""Stall detection as a pure function of the folded state and a clock.

The live orchestrator and `ledgerbus stalls`/replay call the same function, so "stalled" means the
same thing whether it is decided now or reconstructed from a recorded ledger.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import msgspec

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


def _ms(seconds: float) -> int:
    # Whole milliseconds, the same in check_task and next_check_ms: with `seconds * 1000` compared as a
    # float (1.001 * 1000 == 1000.9999…), a timer set for next_check_ms could wake to find nothing due.
    return max(1, round(seconds * 1000))


def _sign_of_life(task: TaskState) -> int:
    # The latest of the REQUEST, the ACK and the last PROGRESS: a retry's silence starts at its own
    # REQUEST, not at an older attempt's ACK.
    return max(t for t in (task.sent_at, task.acked_at, task.last_activity_at) if t is not None)


def _receipt_start(sent_at: int, receipt_since: int | None) -> int:
    return sent_at if receipt_since is None else max(sent_at, receipt_since)


def check_task(task: TaskState, now_ms: int, policy: TaskPolicy, *, with_timeout: bool = True,
               receipt_since: int | None = None) -> str | None:
    """Which limit, if any, an unfinished task has passed at `now_ms`.

    `receipt_since`: when the receipt window started, if not at the send (the live orchestrator
    restarts it while the request is seen waiting in its type's queue, see receipts.py).
    """
    if task.status not in (TaskStatus.SENT, TaskStatus.ACKED) or task.sent_at is None:
        return None
    if with_timeout and now_ms - task.sent_at >= _ms(policy.timeout):
        return ErrorCode.TIMED_OUT.value
    if task.deadline is not None and now_ms > task.deadline:
        return ErrorCode.DEADLINE_EXCEEDED.value
    if task.status is TaskStatus.SENT and now_ms - _receipt_start(task.sent_at, receipt_since) >= _ms(policy.receipt_timeout):
        return ErrorCode.NO_RECEIPT.value
    if task.status is TaskStatus.ACKED and now_ms - _sign_of_life(task) >= _ms(policy.stall_after):
        return ErrorCode.STALLED.value
    return None


def next_check_ms(task: TaskState, policy: TaskPolicy, *, receipt_since: int | None = None) -> int | None:
    """The earliest moment `check_task` could change its answer for this task (for timers)."""
    if task.status not in (TaskStatus.SENT, TaskStatus.ACKED) or task.sent_at is None:
        return None
    times = [task.sent_at + _ms(policy.timeout)]
    if task.deadline is not None:
        times.append(task.deadline + 1)
    if task.status is TaskStatus.SENT:
        times.append(_receipt_start(task.sent_at, receipt_since) + _ms(policy.receipt_timeout))
    else:
        times.append(_sign_of_life(task) + _ms(policy.stall_after))
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
            policy = policy_for(task.capability, task.agent)
            if task.task_id == st.root_task_id and len(st.tasks) > 1 and task.sent_at is not None:
                # A decomposed conversation's root: the orchestrator's requests and decisions are its sign
                # of life, and it lasts as long as its steps, so only silence of the whole conversation (a
                # dead orchestrator) or a missing receipt counts, not the per-task timeout.
                task = msgspec.structs.replace(
                    task, last_activity_at=max(_sign_of_life(task), st.last_timestamp or 0))
                code = check_task(task, now_ms, policy, with_timeout=False)
            else:
                code = check_task(task, now_ms, policy)
            if code is None:
                continue
            silent = now_ms - _sign_of_life(task)
            out.append(Stall(st.conversation_id, task.task_id, task.agent, task.capability, code, silent, task.attempt))
    return out
