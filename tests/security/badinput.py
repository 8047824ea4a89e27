"""A typed agent, a recorder and an inbox, for the bad-input tests: every message gets one answer, in the ledger."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

import msgspec

from ledgerbus.agents.runtime import AgentRuntime
from ledgerbus.agents.sdk import Agent
from ledgerbus.eventstore.recorder import Recorder
from ledgerbus.schemas.capability import CapabilityRegistry
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import Envelope, new_request


class Add(msgspec.Struct, forbid_unknown_fields=True):
    a: int
    b: int
    note: str = ""


class Sum(msgspec.Struct):
    sum: int


def adder(calls: list[Any]) -> Agent:
    agent = Agent("adder", registry=CapabilityRegistry())

    @agent.capability("math.add")
    async def add(inp: Add, ctx: Any) -> Sum:
        calls.append((ctx.task_id, inp))
        return Sum(inp.a + inp.b)

    return agent


class World:
    """The adder agent serving, a recorder mirroring, and every answer addressed to `tester`."""

    def __init__(self, bus: Any, ledger: Any) -> None:
        self.bus, self.ledger = bus, ledger
        self.calls: list[Any] = []
        self.answers: list[Envelope] = []
        self.runtime = AgentRuntime(adder(self.calls), bus, announce=False)
        self.recorder = Recorder(bus, ledger)

    async def __aenter__(self) -> "World":
        async def on(msg: Any) -> None:
            self.answers.append(self.bus.codec.decode(msg.data))

        await self.bus.subscribe_inbox("tester", on)
        await self.runtime.start()
        await self.recorder.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runtime.stop(drain=False)
        await self.recorder.stop()

    def subject(self, conv: str = "conv-bad") -> str:
        return f"{self.bus.subjects.prefix}.adder.REQUEST.{conv}"

    async def raw(self, data: bytes, conv: str = "conv-bad", headers: dict[str, str] | None = None) -> int:
        """Publish bytes as a request to the adder (by default with a `Lb-Sender: tester` header);
        returns the stream sequence."""
        ack = await self.bus.publish_raw(self.subject(conv), data, {"Lb-Sender": "tester"} if headers is None else headers)
        return int(ack.seq)

    async def wait_answers(self, n: int, timeout: float = 10.0) -> list[Envelope]:
        deadline = time.monotonic() + timeout
        while len(self.answers) < n:
            assert time.monotonic() < deadline, f"{len(self.answers)} answers, expected {n}"
            await asyncio.sleep(0.01)
        return self.answers

    async def still_serves(self, a: int = 2, b: int = 3) -> Envelope:
        """A valid request right after the bad ones is answered with its RESPONSE."""
        req = new_request(sender="tester", recipient="adder", capability="math.add", payload={"a": a, "b": b})
        await self.bus.publish(req)
        deadline = time.monotonic() + 10
        while not any(e.causation_id == req.id and e.action is Action.RESPONSE for e in self.answers):
            assert time.monotonic() < deadline, "the agent stopped serving"
            await asyncio.sleep(0.01)
        (resp,) = [e for e in self.answers if e.causation_id == req.id and e.action is Action.RESPONSE]
        assert resp.payload == {"sum": a + b}
        return resp

    async def accounted(self) -> None:
        await accounted(self.bus, self.ledger, self.recorder, holding=[a.id for a in self.answers])


async def accounted(bus: Any, ledger: Any, recorder: Any, holding: Iterable[str] = ()) -> None:
    """Nothing neither answered nor recorded: every stream message is in SQLite as an event or a reject,
    or is a second copy of an envelope id already there (which the store skips by design).
    `holding`: ids of answers already received, which must be in SQLite too."""
    last = await recorder.catch_up(holding=holding)
    db = ledger.db
    seen = {p for (p,) in db.execute("select position from events union select position from rejects")}
    for seq in range(1, last + 1):
        if seq in seen:
            continue
        raw = await bus.js.get_msg(bus.subjects.stream, seq)
        env = bus.codec.decode(raw.data or b"")  # undecodable would have been a reject
        first = db.execute("select position from events where id=?", (env.id,)).fetchone()
        assert first is not None and first[0] < seq, f"stream sequence {seq} is not in the mirror"
