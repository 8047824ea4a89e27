"""The orchestrator: runs a plan's steps as tasks on agents and survives their failure.

Every decision is an envelope in the ledger (an ERROR from `orchestrator` with its code, or a
RESPONSE flagged FALLBACK_USED), and the state it acts on is the fold of the envelopes it has seen,
so a replay of the ledger explains every step it took. One agent failing only ever affects its own
tasks: each step runs in its own asyncio task behind its own breaker and rate-limit bucket.

`Orchestrator` is the facade: it builds the parts and holds conversations' claims. A `Conductor`
(conductor.py) runs a conversation; a `Supervisor` (supervisor.py) sees one task's attempts through.
Its clock, rate limiter and publisher are parameters, so a replay mode or a test configures them.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

from ledgerbus.agents.directory import Directory
from ledgerbus.bus.connection import Bus
from ledgerbus.bus.requester import Requester
from ledgerbus.errors import ConfigError
from ledgerbus.eventstore.fold import ConversationStatus, TaskState
from ledgerbus.ids import now_ms
from ledgerbus.orchestrator.attempt import Attempts
from ledgerbus.orchestrator.backpressure import CapacityGate
from ledgerbus.orchestrator.breaker import BreakerRegistry, BreakerState
from ledgerbus.orchestrator.clock import Clock, ObserverClock
from ledgerbus.orchestrator.conductor import Conductor, why
from ledgerbus.orchestrator.conductors import DEFAULT_LEASE, Conductors, Held
from ledgerbus.orchestrator.decisions import Emitter
from ledgerbus.orchestrator.inflight import ConversationResult, Run, root_request
from ledgerbus.orchestrator.plan import Decomposer, SingleStepDecomposer
from ledgerbus.orchestrator.policy import PolicySet
from ledgerbus.orchestrator.publisher import Publisher
from ledgerbus.orchestrator.ratelimit import Limiter, from_policy
from ledgerbus.orchestrator.receipts import QueueProbe
from ledgerbus.orchestrator.recovery import conversation_events, open_conversations
from ledgerbus.orchestrator.router import Router
from ledgerbus.orchestrator.supervisor import Supervisor
from ledgerbus.schemas.capability import CapabilityRegistry, registry as default_registry
from ledgerbus.schemas.envelope import Envelope, new_request

log = logging.getLogger("ledgerbus.orchestrator")

R = TypeVar("R")


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
        clock: Clock | None = None,
        limiter: Limiter | None = None,
        publisher: Publisher | None = None,
    ) -> None:
        """`clock`: what windows, backoffs, cool-downs and refills run on (default: the observer's clock).
        `limiter`: asked before every REQUEST (default: the policies' rate limits, on `clock`).
        `publisher`: how envelopes reach the ledger (default: `bus`, riding out outages for a minute)."""
        self.bus = bus
        # Unix ms on which receipt, stall and timeout windows run, and at which it folds what it sends and
        # hears (see orchestrator/clock.py): never the senders' timestamps.
        self.clock: Clock = clock or ObserverClock()
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
            clock=self.clock.monotonic,
            on_transition=self._on_breaker,
        )
        # Backpressure: no more requests in flight per agent type than its live instances take at once.
        self.capacity = CapacityGate()
        self.queues = QueueProbe(bus, live_instances=self.router.live_instances, clock=self.clock)
        self.publisher = publisher or Publisher(bus, name)
        # Recent transitions, for inspection: bounded, the ledger (BREAKER_OPEN decisions) is the record.
        self.breaker_log: deque[tuple[str, BreakerState, BreakerState]] = deque(maxlen=256)
        emitter = Emitter(self.publisher, self.clock, name)
        self.attempts = Attempts(emitter=emitter, clock=self.clock, router=self.router, capacity=self.capacity,
                                 queues=self.queues)
        self.supervisor = Supervisor(
            name=name, emitter=emitter, publisher=self.publisher, clock=self.clock, attempts=self.attempts,
            policies=self.policies, registry=self.registry, router=self.router, breakers=self.breakers,
            limiter=limiter or from_policy(self.policies.rate, self.clock.monotonic), rng=self.rng,
        )
        self.conductor = Conductor(name=name, decomposer=self.decomposer, supervisor=self.supervisor,
                                   emitter=emitter, read_events=self._read_events)

    @property
    def runs(self) -> dict[str, Run]:
        """Conversations this process conducts now, by id."""
        return self.conductor.runs

    @property
    def limiter(self) -> Limiter:
        return self.supervisor.limiter

    @limiter.setter
    def limiter(self, limiter: Limiter) -> None:
        self.supervisor.limiter = limiter

    @property
    def sent_requests(self) -> int:
        """REQUESTs to agents, first attempts and retries alike."""
        return self.attempts.sent_requests

    @property
    def publish_patience(self) -> float:
        """Seconds an envelope is re-published while the server is unreachable."""
        return self.publisher.patience

    @publish_patience.setter
    def publish_patience(self, seconds: float) -> None:
        self.publisher.patience = seconds

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

    async def _read_events(self, conversation_id: str) -> list[Envelope]:
        return await conversation_events(self.bus, conversation_id)

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
        return await self.conduct(held, self.conductor.start(root, publish_root=True))

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

    async def take(self, held: Held, root: Envelope, events: Iterable[Envelope]) -> ConversationResult | None:
        """Conduct a delivered root REQUEST under `held`: resumed from `events` (its envelopes in ledger
        order) when someone took it up before, else started here. None if it turns out to have ended."""
        events = list(events)
        if len(events) > 1:
            return await self.resume(events, claim=held)
        return await self.conduct(held, self.conductor.start(root, publish_root=False))

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
        root, state = root_request(events)
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
        return await self.conduct(held, self.conductor.resume(root, events))

    async def rerun(self, events: Iterable[Envelope], task_ids: Iterable[str], *,
                    results: dict[str, TaskState] | None = None) -> dict[str, TaskState]:
        """Run chosen tasks of a recorded conversation again, live, each as a new task `<task>_rerunN`.

        The original tasks and their results stay as recorded; a rerun carries the recorded input, a
        fresh idempotency key (so the agent really runs it instead of answering from its record) and goes
        through routing, breakers, retries and the rate limiter like any task. Returns the new tasks' states
        (also written into `results` as each finishes, so a caller keeps them if a later one raises).
        """
        events = list(events)
        root, _ = root_request(events)
        if root is None:
            raise ConfigError("no conversation to re-run tasks of: its root REQUEST is not in the events")
        out: dict[str, TaskState] = results if results is not None else {}
        await self.conductor.rerun(root, events, task_ids, out)
        return out

    async def recover(self) -> list[ConversationResult]:
        """Finish every conversation addressed to this orchestrator that the ledger shows as unfinished."""
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
                log.error("could not resume conversation %s: %s", cid, why(r), exc_info=r)
            elif r is not None:
                out.append(r)
        return out

    async def serve(self, *, recover: bool = True, concurrency: int = 256,
                    stop: asyncio.Event | None = None, ready: asyncio.Event | None = None,
                    announce: bool = True) -> None:
        """Run as a service taking REQUESTs addressed to this orchestrator (see `orchestrator.service`)."""
        from ledgerbus.orchestrator.service import serve

        await serve(self, recover=recover, concurrency=concurrency, stop=stop, ready=ready, announce=announce)
