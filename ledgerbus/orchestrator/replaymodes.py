"""Replay modes beyond the pure fold: resimulate, re-execute, fork.

- **resimulate** runs today's Orchestrator on a *private* nats-server (a temporary directory, its own
  ledger) against playback agents that answer each REQUEST with what the recorded agents answered to
  the same task and attempt. Whatever the orchestrator decides is compared with what the ledger
  recorded: a divergence report, like a determinism check. Nothing reaches the real ledger.
- **re-execute** resumes a conversation live (Orchestrator.resume): unfinished tasks are re-sent with
  their original idempotency keys through the rate limiter, and a budget caps how many REQUESTs it
  may send.
- **fork** copies a conversation's events up to position N into a new conversation id (new envelope
  ids, task ids renamed), with one payload edited, appends that copy to the ledger and resumes it
  live. The original conversation is never written to.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from ledgerbus.bus.connection import Bus
from ledgerbus.errors import BudgetExhausted as BudgetExhausted, ConfigError  # BudgetExhausted: re-exported
from ledgerbus.eventstore.base import StoredEvent
from ledgerbus.eventstore.fold import ConversationState, ConversationStatus, TaskState, fold
from ledgerbus.ids import now_ms, uuid7
from ledgerbus.orchestrator.engine import Orchestrator
from ledgerbus.orchestrator.inflight import ConversationResult
from ledgerbus.orchestrator.plan import Decomposer
from ledgerbus.orchestrator.policy import PolicySet
from ledgerbus.orchestrator.ratelimit import Limiter, Sleep, from_policy
from ledgerbus.schemas.codes import Action, ErrorCode
from ledgerbus.schemas.envelope import Envelope

#: Decisions that depend on wall-clock load, not on logic: never a divergence.
TIMING_CODES = frozenset({ErrorCode.RATE_LIMITED.value})
_ANSWERS = (Action.ACK, Action.PROGRESS, Action.RESPONSE, Action.ERROR)


class Divergence(msgspec.Struct, frozen=True):
    task: str  # step name (task id without the conversation prefix), or "conversation"
    field: str
    recorded: Any
    simulated: Any


@dataclass
class ResimulationReport:
    conversation_id: str
    divergences: list[Divergence] = field(default_factory=list)
    requests: int = 0  # REQUESTs today's orchestrator sent
    unanswered: list[str] = field(default_factory=list)  # (task, attempt) it asked that the ledger never saw
    recorded: ConversationState | None = None
    simulated: ConversationState | None = None

    @property
    def same(self) -> bool:
        return not self.divergences


def _root_request(events: Sequence[StoredEvent]) -> Envelope:
    state = fold(events)
    for ev in events:
        e = ev.envelope
        if e.action is Action.REQUEST and e.task_id == state.root_task_id:
            return e
    raise ConfigError("the conversation has no root REQUEST in the ledger (was it compacted or cut short?)")


def _step(task_id: str, conversation_id: str, root_task_id: str | None = None) -> str:
    if task_id in (conversation_id, root_task_id):
        return "root"
    prefix = conversation_id + "_"
    return task_id[len(prefix):] if task_id.startswith(prefix) else task_id


def _task_view(t: TaskState) -> dict[str, Any]:
    return {
        "status": t.status.value,
        "attempts": t.attempts,
        "decisions": [(d.code, d.attempt) for d in t.decisions if d.code not in TIMING_CODES],
        "fallback": t.fallback,
        "error": t.error.code if t.error else None,
        "input": t.input,
    }


def compare(recorded: ConversationState, simulated: ConversationState) -> list[Divergence]:
    """What today's orchestrator did differently from the ledger: status, attempts, decisions, inputs."""
    out: list[Divergence] = []
    if recorded.status != simulated.status:
        out.append(Divergence("conversation", "status", recorded.status.value, simulated.status.value))
    rec = {_step(k, recorded.conversation_id, recorded.root_task_id): v for k, v in recorded.tasks.items()}
    sim = {_step(k, simulated.conversation_id, simulated.root_task_id): v for k, v in simulated.tasks.items()}
    for step in list(rec) + [s for s in sim if s not in rec]:
        a, b = rec.get(step), sim.get(step)
        if a is None or b is None:
            out.append(Divergence(step, "task", "present" if a else "absent", "present" if b else "absent"))
            continue
        va, vb = _task_view(a), _task_view(b)
        if step == "root":
            va.pop("input"), vb.pop("input")
        for key in va:
            if va[key] != vb[key]:
                out.append(Divergence(step, key, va[key], vb[key]))
    return out


class _Playback:
    """Answers today's REQUESTs with the recorded answers to the same task and attempt, on the recorded clock.

    Each answer goes out as long after today's REQUEST as it came after the recorded one, so an answer
    that arrived after a stall or timeout decision arrives after today's decision too.
    """

    def __init__(self, bus: Bus, events: Sequence[StoredEvent], orchestrator: str) -> None:
        self.bus = bus
        self.orchestrator = orchestrator
        self.answers: dict[tuple[str, int], list[Envelope]] = {}
        self.requests: dict[tuple[str, int], Envelope] = {}
        for ev in events:
            e = ev.envelope
            if e.action is Action.REQUEST:
                self.requests.setdefault((e.task_id, e.attempt), e)
            elif e.action in _ANSWERS and e.sender != orchestrator:
                self.answers.setdefault((e.task_id, e.attempt), []).append(e)
        self.seen: list[Envelope] = []
        self.unanswered: list[str] = []
        self._sub: Any = None
        self._pending: set[asyncio.Task[None]] = set()

    async def start(self, conversation_id: str) -> None:
        subject = f"{self.bus.subjects.prefix}.*.REQUEST.{conversation_id}"
        self._sub = await self.bus.subscribe(subject, self._on_request)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
        for task in self._pending:
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)

    async def _on_request(self, msg: Any) -> None:
        req = self.bus.codec.decode(msg.data)
        if req.recipient == self.orchestrator:
            return
        self.seen.append(req)
        recorded = self.answers.get((req.task_id, req.attempt))
        if not recorded:
            self.unanswered.append(f"{req.task_id}#{req.attempt}")
            return  # the recorded agent never answered either: today's orchestrator must notice the silence
        sent_at = self.requests.get((req.task_id, req.attempt), req).timestamp
        task = asyncio.create_task(self._answer(req, recorded, sent_at))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _answer(self, req: Envelope, recorded: list[Envelope], sent_at: int) -> None:
        start = asyncio.get_running_loop().time()
        for ans in recorded:
            delay = max(0, ans.timestamp - sent_at) / 1000 - (asyncio.get_running_loop().time() - start)
            if delay > 0:
                await asyncio.sleep(delay)
            await self.bus.publish(msgspec.structs.replace(
                ans, id=uuid7(), causation_id=req.id, recipient=req.answer_to, timestamp=now_ms()))


async def resimulate(
    events: Sequence[StoredEvent],
    *,
    decomposer: Decomposer | None = None,
    policies: PolicySet | None = None,
    orchestrator: str = "orchestrator",
    timeout: float | None = None,
    seed: int = 0,
) -> ResimulationReport:
    """Run today's orchestrator on a private server against the recorded answers; report divergences."""
    from ledgerbus.bus.server import EmbeddedServer, ServerConfig

    if not events:
        raise ConfigError("no events to resimulate")
    root = _root_request(events)
    cid = root.conversation_id
    recorded = fold(events)
    if timeout is None:  # playback keeps the recorded clock: allow the recorded duration, twice over
        span = (events[-1].envelope.timestamp - events[0].envelope.timestamp) / 1000
        timeout = max(60.0, 2 * span + 10)
    with tempfile.TemporaryDirectory(prefix="ledgerbus-resim-") as tmp:
        server = await asyncio.to_thread(EmbeddedServer(ServerConfig(data_dir=Path(tmp))).start)
        bus = await Bus.connect(server.url, prefix="resim", name="ledgerbus-resimulate")
        playback = _Playback(bus, events, orchestrator)
        try:
            await playback.start(cid)
            async with Orchestrator(bus, name=orchestrator, decomposer=decomposer, policies=policies,
                                    use_directory=False, rng=random.Random(seed)) as orch:
                result = await asyncio.wait_for(
                    orch.run(root.capability, root.payload, requester=root.sender, conversation_id=cid), timeout)
                requests = orch.sent_requests
        finally:
            await playback.stop()
            await bus.close()
            await asyncio.to_thread(server.stop)
    report = ResimulationReport(cid, compare(recorded, result.state), requests, playback.unanswered,
                                recorded, result.state)
    return report


# -- re-execute -------------------------------------------------------------------------------


class BudgetLimiter:
    """Wraps the orchestrator's rate limiter: every REQUEST passes through it, so it can count them."""

    def __init__(self, inner: Limiter, budget: int | None) -> None:
        self.inner = inner
        self.budget = budget
        self.used = 0

    async def acquire(self, key: str, n: float = 1.0, sleep: Sleep = asyncio.sleep) -> float:
        if self.budget is not None and self.used >= self.budget:
            raise BudgetExhausted(f"the re-execute budget of {self.budget} requests is spent")
        self.used += 1
        return float(await self.inner.acquire(key, n, sleep))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def budgeted(policies: PolicySet | None, budget: int | None) -> BudgetLimiter:
    """The policies' rate limiter, with at most `budget` REQUESTs to send (None: no cap)."""
    return BudgetLimiter(from_policy((policies or PolicySet()).rate), budget)


@dataclass
class ReexecuteReport:
    conversation_id: str
    sent: int
    budget: int | None
    result: ConversationResult | None
    refused: bool = False  # the budget stopped at least one REQUEST
    reruns: dict[str, TaskState] = field(default_factory=dict)  # chosen task id -> its re-run's state


async def re_execute(
    bus: Bus,
    events: Sequence[StoredEvent],
    *,
    max_requests: int | None,
    decomposer: Decomposer | None = None,
    policies: PolicySet | None = None,
    orchestrator: str = "orchestrator",
    on_orchestrator: Callable[[Orchestrator], None] | None = None,
    tasks: Sequence[str] = (),
) -> ReexecuteReport:
    """Resume a conversation live, sending at most `max_requests` REQUESTs.

    Without `tasks`, unfinished tasks are re-sent (Orchestrator.resume). With `tasks`, those tasks —
    finished or not — run again as new tasks `<task>_rerunN` beside the recorded ones (Orchestrator.rerun).
    """
    if tasks:
        return await _rerun(bus, events, tasks, max_requests, decomposer, policies, orchestrator, on_orchestrator)
    view = [ev.envelope for ev in events]
    cid = events[0].envelope.conversation_id if events else ""
    limiter = budgeted(policies, max_requests)
    async with Orchestrator(bus, name=orchestrator, decomposer=decomposer, policies=policies,
                            limiter=limiter) as orch:
        if on_orchestrator is not None:
            on_orchestrator(orch)
        result = await orch.resume(view)
    refused = result is not None and any(isinstance(exc, BudgetExhausted) for exc in result.raised)
    return ReexecuteReport(cid, limiter.used, max_requests, result, refused)


async def _rerun(bus: Bus, events: Sequence[StoredEvent], tasks: Sequence[str], max_requests: int | None,
                 decomposer: Decomposer | None, policies: PolicySet | None, orchestrator: str,
                 on_orchestrator: Callable[[Orchestrator], None] | None) -> ReexecuteReport:
    view = [ev.envelope for ev in events]
    cid = view[0].conversation_id if view else ""
    reruns: dict[str, TaskState] = {}
    refused = False
    limiter = budgeted(policies, max_requests)
    async with Orchestrator(bus, name=orchestrator, decomposer=decomposer, policies=policies,
                            limiter=limiter) as orch:
        if on_orchestrator is not None:
            on_orchestrator(orch)
        try:
            await orch.rerun(view, tasks, results=reruns)  # fills `reruns` as each finishes
        except BudgetExhausted:
            refused = True
    return ReexecuteReport(cid, limiter.used, max_requests, None, refused, reruns)


# -- fork -------------------------------------------------------------------------------------


def fork_envelopes(events: Sequence[StoredEvent], at: int, *, payload: dict[str, Any] | None = None,
                   edit_position: int | None = None, merge: bool = True,
                   new_id: str | None = None) -> list[Envelope]:
    """A copy of the conversation's events up to position `at`, under a new conversation id.

    Every id that names the old conversation is renamed; causation ids follow their envelopes. The
    event at `edit_position` (default: the root REQUEST) gets `payload` (merged into, or replacing, its own).
    """
    prefix, target = _fork_point(events, at, edit=payload is not None, edit_position=edit_position)
    old = prefix[0].envelope.conversation_id
    cid = new_id or uuid7()
    ids: dict[str, str] = {}

    def rename(value: str | None) -> str | None:
        if value is None:
            return None
        if value == old:
            return cid
        return cid + value[len(old):] if value.startswith(old + "_") else value

    out: list[Envelope] = []
    base = now_ms() - len(prefix)
    for i, ev in enumerate(prefix):
        e = ev.envelope
        ids[e.id] = cid if e.id == old else uuid7()
        body = e.payload
        if payload is not None and ev.position == target:
            body = {**e.payload, **payload} if merge else dict(payload)
        out.append(msgspec.structs.replace(
            e, id=ids[e.id], conversation_id=cid, task_id=rename(e.task_id) or cid,
            causation_id=ids.get(e.causation_id, e.causation_id) if e.causation_id else None,
            idempotency_key=rename(e.idempotency_key), payload=body,
            timestamp=base + i,  # now, in order: the copied history must not look like a long stall
            traceparent=None))
    return out


def _fork_point(events: Sequence[StoredEvent], at: int, *, edit: bool,
                edit_position: int | None) -> tuple[list[StoredEvent], int]:
    """The events a fork at `at` copies, and the position of the one it edits (default: the root REQUEST)."""
    prefix = [ev for ev in events if ev.position <= at]
    if not prefix:
        raise ConfigError(f"no events of the conversation at or before position {at}")
    root = _root_request(events)
    if not any(ev.envelope.id == root.id for ev in prefix):
        raise ConfigError(f"position {at} is before the conversation's root REQUEST; fork from it or later")
    target = edit_position if edit_position is not None else next(ev.position for ev in prefix if ev.envelope.id == root.id)
    if edit and not any(ev.position == target for ev in prefix):
        raise ConfigError(f"position {target} is not an event of conversation "
                          f"{prefix[0].envelope.conversation_id} at or before {at}")
    return prefix, target


@dataclass
class ForkReport:
    original: str
    fork: str
    copied: int
    result: ConversationResult | None


async def fork(bus: Bus, events: Sequence[StoredEvent], at: int, *, payload: dict[str, Any] | None = None,
               edit_position: int | None = None, merge: bool = True, decomposer: Decomposer | None = None,
               policies: PolicySet | None = None, orchestrator: str = "orchestrator",
               max_requests: int | None = None) -> ForkReport:
    """Fork the conversation at `at` with an edited payload into a new conversation, and run it live."""
    copy = fork_envelopes(events, at, payload=payload, edit_position=edit_position, merge=merge)
    state = fold(copy)
    if state.status is not ConversationStatus.RUNNING:
        raise ConfigError(f"the conversation had already ended at position {at}: fork from an earlier position")
    async with Orchestrator(bus, name=orchestrator, decomposer=decomposer, policies=policies,
                            limiter=budgeted(policies, max_requests)) as orch:
        # Claimed before the copy is in the ledger: a service delivered the copied root REQUEST waits for
        # this fork to finish instead of conducting it too.
        held = await orch.conductors.claim_new(copy[0].conversation_id)
        try:
            for env in copy:  # history, not requests for anyone to take: no consumer is created for them
                await bus.publish(env, ensure_consumer=False)
        except BaseException:
            await orch.conductors.release(held)
            raise
        result = await orch.resume(copy, claim=held)
    return ForkReport(events[0].envelope.conversation_id, copy[0].conversation_id, len(copy), result)
