"""A load of multi-step conversations that survives server faults, and a record of every acknowledged publish.

Each conversation runs its steps one after another through an agent; a step is done when its RESPONSE is
in the ledger. Publishes are retried with the same envelope (same Nats-Msg-Id), so a retry of a publish
whose ack was lost is deduplicated by JetStream, not stored twice.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec

from ledgerbus.agents.runtime import AgentRuntime
from ledgerbus.agents.sdk import Agent
from ledgerbus.bus.connection import Bus
from ledgerbus.bus.streams import ConsumerSettings
from ledgerbus.schemas.capability import CapabilityRegistry
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import Envelope, new_request


class Step(msgspec.Struct):
    n: int


def stepper(calls: list[str]) -> Agent:
    agent = Agent("stepper", registry=CapabilityRegistry())

    @agent.capability("step.next")
    async def next_(inp: Step, ctx: Any) -> Step:
        calls.append(ctx.task_id)
        return Step(inp.n + 1)

    return agent


class AckLog:
    """Wraps a bus's publish/publish_async: records (id, stream seq) of every publish JetStream acknowledged."""

    def __init__(self) -> None:
        self.acked: dict[str, int] = {}
        self.longest_gap = 0.0
        self._last = time.monotonic()

    def _note(self, env: Envelope, seq: int) -> None:
        now = time.monotonic()
        self.longest_gap = max(self.longest_gap, now - self._last)
        self._last = now
        self.acked[env.id] = seq

    def wrap(self, bus: Bus) -> Bus:
        real, real_async = bus.publish, bus.publish_async

        async def publish(env: Envelope, **kw: Any) -> Any:
            ack = await real(env, **kw)
            self._note(env, ack.seq)
            return ack

        async def publish_async(env: Envelope, **kw: Any) -> Any:
            fut = await real_async(env, **kw)
            fut.add_done_callback(lambda f: None if f.cancelled() or f.exception() else self._note(env, f.result().seq))
            return fut

        bus.publish = publish  # type: ignore[method-assign]
        bus.publish_async = publish_async  # type: ignore[method-assign]
        return bus


async def publish_until_acked(bus: Bus, env: Envelope, deadline: float) -> None:
    while True:
        try:
            await bus.publish(env, timeout=1.0)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)  # the server is away: pace the retries


async def answered(bus: Bus, req: Envelope) -> bool:
    """Is the RESPONSE to `req` in the ledger? (The live copy may have been missed while disconnected.)"""
    try:
        raw = await bus.js.get_msg(bus.subjects.stream, subject=f"{bus.subjects.prefix}.{req.sender}.RESPONSE.{req.conversation_id}")
    except Exception:
        return False
    env = bus.codec.decode(raw.data or b"")
    return env.causation_id == req.id or (env.task_id == req.task_id)


class Driver:
    def __init__(self, bus: Bus, conversations: int, steps: int) -> None:
        self.bus = bus
        self.conversations = conversations
        self.steps = steps
        self.done_steps = 0
        self.finished: set[str] = set()
        self._waiters: dict[str, asyncio.Event] = {}

    async def start(self) -> "Driver":
        async def on(msg: Any) -> None:
            try:
                env = self.bus.codec.decode(msg.data)
            except Exception:
                return
            if env.action is Action.RESPONSE and env.task_id in self._waiters:
                self._waiters[env.task_id].set()

        await self.bus.subscribe_inbox("driver", on)
        return self

    async def conversation(self, index: int, deadline: float) -> None:
        conv = f"load-{index}"
        for k in range(self.steps):
            req = new_request(sender="driver", recipient="stepper", capability="step.next", payload={"n": k},
                              conversation_id=conv, task_id=f"{conv}-{k}")
            ev = self._waiters.setdefault(req.task_id, asyncio.Event())
            await publish_until_acked(self.bus, req, deadline)
            while not ev.is_set():
                assert time.monotonic() < deadline, f"{conv} step {k} not answered"
                try:
                    await asyncio.wait_for(ev.wait(), 1.0)
                except asyncio.TimeoutError:
                    if await answered(self.bus, req):
                        break
            self.done_steps += 1
        self.finished.add(conv)

    async def run(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        await asyncio.gather(*(self.conversation(i, deadline) for i in range(self.conversations)))


async def agents(url: str, n: int, calls: list[str], acks: AckLog) -> list[AgentRuntime]:
    out = []
    for i in range(n):
        bus = acks.wrap(await Bus.connect(url, name=f"stepper-{i}"))
        out.append(await AgentRuntime(stepper(calls), bus, instance=f"stepper-{i}", announce=False,
                                      consumer=ConsumerSettings(ack_wait=2.0, max_deliver=-1)).start())
    return out
