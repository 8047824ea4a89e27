"""The orchestrator as a service: it takes REQUESTs addressed to it from its durable consumer.

The JetStream message is acked when the conversation has ended, so if the process dies the REQUEST is
redelivered to another orchestrator, which resumes the conversation from the ledger.

A delivered REQUEST is conducted only under the conversation's claim (`conductors`): when another
orchestrator holds it (`Orchestrator.run()` in another process, a fork, a service that took it first)
this one keeps the message and waits — acking it once the holder finishes, taking over if the holder
falls silent for a lease. A finished conversation is acked and skipped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any


from ledgerbus.bus.directory import Announcer, Directory, InstanceInfo, describe_capabilities
from ledgerbus.bus.rejection import reject_raw
from ledgerbus.bus.streams import ConsumerSettings
from ledgerbus.errors import BusClosed, BusTimeout, ConfigError, InvalidMessage, UnknownCapability
from ledgerbus.ids import now_ms, uuid7
from ledgerbus.orchestrator.engine import Orchestrator
from ledgerbus.orchestrator.plan import declared_capabilities
from ledgerbus.orchestrator.recovery import conversation_events, root_acknowledged
from ledgerbus.schemas.capability import Capability
from ledgerbus.schemas.codes import Action, ErrorCode
from ledgerbus.schemas.envelope import Envelope, ErrorInfo, answer

log = logging.getLogger("ledgerbus.orchestrator")


async def serve(orch: Orchestrator, *, recover: bool = True, concurrency: int = 256,
                stop: asyncio.Event | None = None, ready: asyncio.Event | None = None,
                announce: bool = True) -> None:
    """Take REQUESTs addressed to `orch` until `stop` is set; `ready` is set once requests reach it.

    It answers the capabilities its decomposer declares and, with `announce`, is listed in the agent
    directory with them (their schemas included) while it serves, as an agent instance is.
    """
    capabilities = served_capabilities(orch)  # before any I/O: a decomposer that cannot be served fails at once
    await orch.start()
    stop = stop or asyncio.Event()
    if recover:
        await orch.recover()
    sub = await orch.bus.agent_consumer(orch.name, ConsumerSettings(ack_wait=60.0, max_deliver=-1))
    tasks: set[asyncio.Task[None]] = set()
    load = _Load(tasks)
    announcer = await _announce(orch, capabilities, concurrency, load) if announce else None
    if ready is not None:
        ready.set()  # requests published from now on reach this service
    try:
        await _take_requests(orch, sub, concurrency, stop, tasks, load)
    finally:
        if announcer is not None:
            await announcer.stop()


def served_capabilities(orch: Orchestrator) -> list[Capability]:
    """What the service answers: the capabilities its decomposer declares, each registered with its schemas."""
    names = declared_capabilities(orch.decomposer)
    missing = sorted(n for n in names if orch.registry.find(n) is None)
    if missing:
        raise ConfigError(f"decomposer {type(orch.decomposer).__name__}: no schema is registered for "
                          f"{', '.join(missing)}; register it where the decomposer is defined, "
                          f"e.g. ledgerbus.schemas.capability.registry.register(name, Input, Output)")
    return [cap for n in sorted(names) if (cap := orch.registry.find(n)) is not None]


def check_request(orch: Orchestrator, root: Envelope) -> None:
    """InvalidMessage for a REQUEST the service does not answer: an undeclared capability, or a bad payload."""
    declared = getattr(orch.decomposer, "capabilities", ())
    if root.capability not in declared:
        raise InvalidMessage(f"orchestrator {orch.name!r} has no capability {root.capability!r}; it offers "
                             f"{', '.join(sorted(declared)) or 'nothing'}",
                             code=ErrorCode.UNKNOWN_CAPABILITY.value, path="$.capability")
    cap = orch.registry.find(root.capability)
    if cap is None:
        raise UnknownCapability(root.capability)
    cap.validate_input(root.payload)


class _Load:
    """The directory entry's counters: conversations finished, and in flight."""

    def __init__(self, tasks: set[asyncio.Task[None]]) -> None:
        self.tasks = tasks
        self.handled = 0

    def track(self, task: asyncio.Task[None]) -> None:
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled():
            self.handled += 1

    def __call__(self, info: InstanceInfo) -> None:
        info.handled, info.inflight = self.handled, len(self.tasks)


async def _announce(orch: Orchestrator, capabilities: list[Capability], concurrency: int, load: _Load) -> Announcer:
    ts = now_ms()
    info = InstanceInfo(agent=orch.name, instance=f"{orch.name}-{socket.gethostname()}-{os.getpid()}-{uuid7()[-6:]}",
                        capabilities=describe_capabilities(capabilities), started_at=ts, seen_at=ts,
                        concurrency=concurrency)
    announcer = Announcer(Directory(orch.bus), info, stats=load)
    await announcer.start()
    return announcer


async def _take_requests(orch: Orchestrator, sub: Any, concurrency: int, stop: asyncio.Event,
                         tasks: set[asyncio.Task[None]], load: _Load) -> None:
    while not stop.is_set() and not orch.bus.is_closed:
        if len(tasks) >= concurrency:
            # Full: wait for a conversation to end, or for stop — never block where stop cannot reach.
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({*tasks, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            continue
        try:
            msgs = await sub.fetch(min(16, concurrency - len(tasks)), timeout=1.0)
        except BusTimeout:
            continue
        except BusClosed:
            break
        except Exception as exc:  # reconnecting: wait a little rather than spin
            log.warning("orchestrator fetch failed: %s", exc)
            await asyncio.sleep(0.2)
            continue
        for msg in msgs:
            t = asyncio.create_task(_serve_one(orch, msg))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            load.track(t)
    for t in list(tasks):
        t.cancel()  # unacked: redelivered to the next orchestrator, which resumes from the ledger


async def _serve_one(orch: Orchestrator, msg: Any) -> None:
    async def heartbeat() -> None:
        while True:
            await asyncio.sleep(20)
            await msg.in_progress()

    beat = asyncio.create_task(heartbeat())
    try:
        try:
            root = orch.bus.codec.decode(msg.data)
        except InvalidMessage as exc:
            await reject_raw(orch.bus, msg, exc, sender=orch.name)
            return
        if root.conversation_id in orch.runs:
            await msg.ack()  # started in this process by run()
            return
        await _take(orch, root)
        await msg.ack()
    except Exception:
        log.exception("conversation failed in the orchestrator; it will be redelivered")
    finally:
        beat.cancel()


async def _take(orch: Orchestrator, root: Envelope) -> None:
    """Conduct a delivered root REQUEST under its claim, starting it or resuming it; nothing if it has ended."""
    held = await orch.conductors.acquire(root.conversation_id, patient=True)
    if held is None:
        return  # finished, by whoever conducted it
    # Validated only by its conductor: whoever holds it (run() elsewhere) may know capabilities we do not.
    try:
        check_request(orch, root)
    except InvalidMessage as exc:
        await orch.conduct(held, _refuse(orch, root, exc))  # the refusal is this conversation's end
        return
    # Only a conversation someone took up before (a claim taken over, or an ACK to the requester in the
    # ledger) has history to resume from: a new one goes straight to work, with no read of the ledger.
    events: list[Envelope] = [root]
    if not held.fresh or await root_acknowledged(orch.bus, root):
        events = await conversation_events(orch.bus, root.conversation_id)
    await orch.take(held, root, events)


async def _refuse(orch: Orchestrator, root: Envelope, exc: InvalidMessage) -> None:
    await orch.bus.publish(answer(root, Action.ERROR, error=ErrorInfo(
        code=exc.code, message=exc.reason, details={"path": exc.path} if exc.path else {})))
