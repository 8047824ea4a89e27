"""State is a fold: `ConversationState = fold(events)`, pure and deterministic, in ledger order.

The same fold serves the live orchestrator, `ledgerbus replay`, stall detection and crash recovery,
so the rules here are the single definition of what a task's status is.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any, NamedTuple

import msgspec

from ledgerbus.schemas.codes import Action, ErrorCode
from ledgerbus.schemas.envelope import Envelope, ErrorInfo


class TaskStatus(str, enum.Enum):
    PENDING = "PENDING"
    SENT = "SENT"
    ACKED = "ACKED"
    DONE = "DONE"
    FAILED = "FAILED"
    STALLED = "STALLED"
    TIMED_OUT = "TIMED_OUT"


class ConversationStatus(str, enum.Enum):
    RUNNING = "RUNNING"
    DONE = "DONE"
    DEGRADED = "DEGRADED"
    FAILED = "FAILED"


#: Orchestrator decisions that explain what happens next without ending the attempt.
NOTE_CODES = frozenset({ErrorCode.RETRY_SCHEDULED.value, ErrorCode.RATE_LIMITED.value})

_ERROR_STATUS = {
    ErrorCode.STALLED.value: TaskStatus.STALLED,
    ErrorCode.TIMED_OUT.value: TaskStatus.TIMED_OUT,
}

TERMINAL = frozenset({TaskStatus.DONE, TaskStatus.FAILED, TaskStatus.STALLED, TaskStatus.TIMED_OUT})


class Decision(msgspec.Struct, frozen=True, gc=False):  # untracked, as Envelope (schemas/envelope.py)
    """An orchestrator decision recorded in the ledger (a retry, a stall, a fallback…)."""

    position: int
    timestamp: int
    code: str
    message: str
    attempt: int


class Answer(msgspec.Struct, frozen=True, gc=False):
    """Where a RESPONSE from an agent is in the ledger: the one that completed a task, or one that came late."""

    position: int
    timestamp: int
    attempt: int
    sender: str


class TaskState(msgspec.Struct, kw_only=True, gc=False):  # untracked, as Envelope (schemas/envelope.py)
    task_id: str
    capability: str
    agent: str  # the recipient of the latest REQUEST
    requester: str
    status: TaskStatus = TaskStatus.PENDING
    attempt: int = 0
    attempts: int = 0  # REQUESTs seen (a redelivered envelope id counts once: the store deduplicates)
    idempotency_key: str = ""
    request_id: str | None = None
    input: dict[str, Any] = msgspec.field(default_factory=dict)
    requested_at: int | None = None  # first REQUEST
    sent_at: int | None = None  # latest REQUEST
    acked_at: int | None = None
    last_activity_at: int | None = None
    finished_at: int | None = None
    deadline: int | None = None
    progress: int = 0
    last_progress: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    fallback: bool = False
    decisions: list[Decision] = msgspec.field(default_factory=list)
    answered: Answer | None = None  # the agent's RESPONSE that completed the task
    late: list[Answer] = msgspec.field(default_factory=list)  # RESPONSEs to attempts the orchestrator had ended
    last_position: int = 0

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    @property
    def duration_ms(self) -> int | None:
        if self.requested_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.requested_at

    @property
    def retry_pending(self) -> bool:
        """A failed attempt the orchestrator said it will retry (a RETRY_SCHEDULED after the failure)."""
        if self.status not in (TaskStatus.FAILED, TaskStatus.STALLED, TaskStatus.TIMED_OUT):
            return False
        # The latest decision says it, skipping RATE_LIMITED notes about the next attempt (still coming);
        # any other decision after the RETRY_SCHEDULED (a BREAKER_OPEN) means the retry was not sent.
        for d in reversed(self.decisions):
            if d.code != ErrorCode.RATE_LIMITED.value:
                return d.code == ErrorCode.RETRY_SCHEDULED.value and d.attempt >= self.attempt
        return False


class Ignored(msgspec.Struct, frozen=True, gc=False):
    """An envelope the fold recorded but did not count, and why (an answer from someone not asked…)."""

    position: int
    envelope_id: str
    task_id: str
    action: str
    sender: str
    reason: str


class _Asked(NamedTuple):
    task_id: str
    recipient: str
    attempt: int


class _Book:
    """The fold's own bookkeeping beside a state: which REQUESTs were asked of whom, which ids were folded.

    Not part of the state's value (not encoded, not compared): it only decides what counts."""

    __slots__ = ("asked", "seen")

    def __init__(self) -> None:
        self.asked: dict[str, _Asked] = {}
        self.seen: set[str] = set()


# dict=True: room for the _Book, which is runtime state beside the fields, not one of them.
class ConversationState(msgspec.Struct, kw_only=True, dict=True):
    conversation_id: str
    status: ConversationStatus = ConversationStatus.RUNNING
    root_task_id: str | None = None
    requester: str | None = None
    capability: str | None = None
    tasks: dict[str, TaskState] = msgspec.field(default_factory=dict)
    started_at: int | None = None
    ended_at: int | None = None
    last_timestamp: int | None = None
    events: int = 0
    last_position: int = 0
    result: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    ignored: list[Ignored] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        self.__dict__["_book"] = _Book()

    @property
    def conductor(self) -> str | None:
        """Who conducts the conversation: the recipient of its root REQUEST (the orchestrator)."""
        root = self.root
        return root.agent if root is not None else None

    @property
    def root(self) -> TaskState | None:
        return self.tasks.get(self.root_task_id) if self.root_task_id else None

    @property
    def subtasks(self) -> list[TaskState]:
        return [t for tid, t in self.tasks.items() if tid != self.root_task_id]

    @property
    def duration_ms(self) -> int | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at


#: The orchestrator's verdicts on an attempt it watched, which it then acts on (retry, fallback, give up).
VERDICT_CODES = frozenset({
    ErrorCode.NO_RECEIPT.value, ErrorCode.STALLED.value, ErrorCode.TIMED_OUT.value,
    ErrorCode.DEADLINE_EXCEEDED.value,
})


def _overruled(task: TaskState, env: Envelope) -> bool:
    # The agent's ERROR can be in flight while the orchestrator gives its verdict on the same attempt, so
    # the two land in either order. The verdict is what the orchestrator acted on: it stands both ways,
    # so the task's status never depends on that race (live fold and replay agree).
    return env.sender != env.recipient and any(
        d.attempt == env.attempt and d.code in VERDICT_CODES for d in task.decisions)


def _ended(task: TaskState, attempt: int) -> bool:
    """The orchestrator gave its verdict on this attempt (it stands: a RESPONSE to it is late), or answered
    the task with a fallback."""
    return task.fallback or any(d.attempt == attempt and d.code in VERDICT_CODES for d in task.decisions)


# Module constants: the fold runs once per envelope on every replay, so no enum lookups in its body.
_REQUEST, _ACK, _PROGRESS, _RESPONSE, _ERROR = Action.REQUEST, Action.ACK, Action.PROGRESS, Action.RESPONSE, Action.ERROR
_FALLBACK_USED = ErrorCode.FALLBACK_USED.value
# Likewise the statuses: a member looked up on its class costs more than the comparison it is used in.
_SENT, _ACKED, _DONE, _FAILED = TaskStatus.SENT, TaskStatus.ACKED, TaskStatus.DONE, TaskStatus.FAILED
_C_RUNNING, _C_DONE, _C_DEGRADED, _C_FAILED = (ConversationStatus.RUNNING, ConversationStatus.DONE,
                                               ConversationStatus.DEGRADED, ConversationStatus.FAILED)


def _refused(state: ConversationState, task: TaskState | None, env: Envelope, book: _Book) -> str | None:
    """Why `env` does not count (None when it does): an answer counts only from whom it was asked.

    ACK/PROGRESS/RESPONSE/ERROR must name, in causationId, a REQUEST of the same task and attempt, and come
    from that REQUEST's recipient. Decisions — an envelope its sender addresses to itself — count from the
    conversation's conductor (the root REQUEST's recipient) and from whoever asked the task. A REQUEST for
    a task already asked counts only from whoever asked it or from the conductor. A second copy of an
    envelope id (a replay beyond the ledger's duplicate window) never counts.
    """
    if env.id in book.seen:
        return "duplicate: an envelope with this id was already folded"
    sender = env.sender
    if env.action is _REQUEST:
        if task is None or sender == task.requester or sender == state.conductor:
            return None
        return f"REQUEST for task {env.task_id} from {sender}, which {task.requester} asked"
    if sender == env.recipient and (sender == state.conductor or (task is not None and sender == task.requester)):
        return None
    asked = book.asked.get(env.causation_id) if env.causation_id is not None else None
    if asked is None or asked.task_id != env.task_id:
        return f"{env.action.value} from {sender} answers no REQUEST of task {env.task_id} (causation {env.causation_id})"
    if sender != asked.recipient:
        return f"{env.action.value} from {sender}, but REQUEST {env.causation_id} was addressed to {asked.recipient}"
    if env.attempt != asked.attempt:
        return f"{env.action.value} claims attempt {env.attempt} of REQUEST {env.causation_id} (attempt {asked.attempt})"
    return None


def apply(state: ConversationState, env: Envelope, position: int = 0,
          observed_at: int | None = None) -> ConversationState:
    """Fold one envelope into `state` (mutates and returns it). Total: every envelope is taken; one that
    does not count (see `_refused`) is listed in `state.ignored` and changes nothing else.

    `observed_at` (unix ms): when the observer saw the envelope — the time JetStream stored it (replay,
    `ledgerbus stalls`) or the orchestrator received it (live). Every time field of the state is taken
    from it, so no sender's clock moves a window (DESIGN.md, "Time is the observer's"); the envelope's
    own `timestamp` stands in only when nothing observed it (hand-built histories, old mirrors).
    """
    ts = env.timestamp if observed_at is None else observed_at
    action = env.action
    task_id = env.task_id
    state.events += 1
    if position > state.last_position:
        state.last_position = position
    if state.started_at is None:
        state.started_at = ts
    last_ts = state.last_timestamp
    if last_ts is None or ts > last_ts:
        state.last_timestamp = ts

    task = state.tasks.get(task_id)
    book: _Book = state.__dict__["_book"]
    refused = _refused(state, task, env, book)
    book.seen.add(env.id)
    if refused is not None:
        state.ignored.append(Ignored(position, env.id, task_id, action.value, env.sender, refused))
        return state
    if action is _REQUEST:
        book.asked[env.id] = _Asked(task_id, env.recipient, env.attempt)
        if task is not None and env.sender != task.requester:
            # The conductor's REQUEST for a task someone else asked first (task ids are predictable):
            # the task is the conductor's, and what was folded for it before does not count.
            state.ignored.append(Ignored(position, env.id, task_id, action.value, env.sender,
                                         f"task {task_id} was asked by {task.requester}; its conductor takes it over"))
            task = None
    if task is None:
        request = action is _REQUEST
        task = TaskState(
            task_id=task_id,
            capability=env.capability,
            agent=env.recipient if request else env.sender,
            requester=env.sender if request else env.recipient,
            idempotency_key=env.idempotency_key or task_id,  # = env.key
        )
        state.tasks[task_id] = task
        if request and state.root_task_id is None:
            state.root_task_id = task_id
            state.requester = env.sender
            state.capability = env.capability
    if position > task.last_position:
        task.last_position = position

    # `env.attempt >= task.attempt` below: an answer to an older attempt must not undo the newer attempt's
    # status (a late ERROR after a retry).
    if action is _REQUEST:
        if task.status is not _DONE and env.attempt >= task.attempt:
            task.status = _SENT
            task.attempt = env.attempt
            task.agent = env.recipient
            task.request_id = env.id
            task.input = env.payload
            task.sent_at = ts
            task.deadline = env.deadline
            task.acked_at = None
            task.finished_at = None  # the failed attempt's end: a running attempt has no duration yet
            task.error = None
        task.attempts += 1
        if task.requested_at is None:
            task.requested_at = ts
    elif action is _ACK:
        if task.status is _SENT and env.attempt >= task.attempt:
            task.status = _ACKED
            task.acked_at = ts
            task.last_activity_at = ts
        elif task.status is _ACKED and env.attempt >= task.attempt:
            # Another instance took the redelivered REQUEST (the first one died): a fresh receipt is a sign
            # of life, so the stall window starts again from it.
            task.last_activity_at = max(task.last_activity_at or ts, ts)
    elif action is _PROGRESS:
        if task.status in (_SENT, _ACKED) and env.attempt >= task.attempt:
            task.status = _ACKED
            task.acked_at = task.acked_at or ts
            task.last_activity_at = ts
            task.progress += 1
            task.last_progress = env.payload
    elif action is _RESPONSE:
        if env.sender != env.recipient and (task.decisions or task.fallback) and _ended(task, env.attempt):
            # The answer raced the orchestrator's verdict, or came after it gave up, and lost: the orchestrator
            # acted on its decision (a retry, a fallback, a failed step), so that is what the task says.
            task.late.append(Answer(position, ts, env.attempt, env.sender))
        elif task.status is not _DONE:
            # Any attempt's RESPONSE completes the task: tasks are idempotent, so a late answer is a valid one.
            task.status = _DONE
            task.result = env.payload
            task.finished_at = ts
            task.last_activity_at = ts
            task.error = env.error  # a RESPONSE with an error is a partial success (fallback / degraded)
            if env.sender != env.recipient:
                task.answered = Answer(position, ts, env.attempt, env.sender)
            if env.error is not None and env.error.code == _FALLBACK_USED:
                task.fallback = True
                task.decisions.append(Decision(position, ts, env.error.code, env.error.message, env.attempt))
    elif action is _ERROR:
        err = env.error or ErrorInfo(code=ErrorCode.INTERNAL.value, message="ERROR without an error object")
        if err.code in NOTE_CODES:
            task.decisions.append(Decision(position, ts, err.code, err.message, env.attempt))
        elif (task.status is _DONE and env.sender == env.recipient and err.code in VERDICT_CODES
              and task.answered is not None and task.answered.attempt == env.attempt and not task.fallback):
            # The verdict on an attempt whose RESPONSE landed just before it: the orchestrator had not seen the
            # answer and acted on its verdict, so the verdict stands this way round too, as it does for an ERROR.
            task.late.append(task.answered)
            task.answered, task.result = None, None
            task.status = _ERROR_STATUS.get(err.code, _FAILED)
            task.error = err
            task.finished_at = ts
            task.decisions.append(Decision(position, ts, err.code, err.message, env.attempt))
        elif task.status is not _DONE and env.attempt >= task.attempt and not _overruled(task, env):
            task.status = _ERROR_STATUS.get(err.code, _FAILED)
            task.error = err
            task.finished_at = ts
            if env.sender == env.recipient or err.code in _ERROR_STATUS:
                # Self-addressed ERRORs are the orchestrator's decisions (a stall, a timeout, a breaker…).
                task.decisions.append(Decision(position, ts, err.code, err.message, env.attempt))

    if task_id == state.root_task_id:
        _settle(state, task)
    return state


def counted(state: ConversationState, request_id: str) -> bool:
    """Whether the REQUEST with this id was folded as one (not ignored) into `state`."""
    book: _Book = state.__dict__["_book"]
    return request_id in book.asked


def _settle(state: ConversationState, root: TaskState) -> None:
    if root.status is _DONE:
        degraded = root.error is not None
        state.status = _C_DEGRADED if degraded else _C_DONE
        state.result, state.error, state.ended_at = root.result, root.error, root.finished_at
    elif root.status in TERMINAL and not root.retry_pending:
        state.status = _C_FAILED
        state.error, state.ended_at = root.error, root.finished_at
    else:
        state.status = _C_RUNNING
        state.ended_at = None


def fold(events: Iterable[Envelope | Any], conversation_id: str | None = None) -> ConversationState:
    """Fold one conversation's events (envelopes, or StoredEvents with positions and stored times) in ledger order."""
    state: ConversationState | None = None
    for item in events:
        if isinstance(item, Envelope):
            env, position, seen = item, 0, None
        else:
            env, position, seen = item.envelope, item.position, getattr(item, "stored_at", None)
        if state is None:
            state = ConversationState(conversation_id=conversation_id or env.conversation_id)
        apply(state, env, position, seen)
    return state or ConversationState(conversation_id=conversation_id or "")
