"""Testing agents against a real bus: run them, ask them, and assert on what the ledger recorded.

    async def test_say(run_agent):
        conv = await run_agent(agent, "echo.say", {"text": "hi"})
        assert conv.response == {"text": "HI"}
        assert conv.actions == ["REQUEST", "ACK", "PROGRESS", "RESPONSE"]

`run_agent` is a fixture of the pytest plugin; `AgentHarness` is the same thing for any async code.
The events come from the JetStream ledger itself, so sub-requests (`ctx.request`) show up too.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from ledgerbus.agents.runtime import AgentRuntime
from ledgerbus.agents.sdk import Agent
from ledgerbus.bus.connection import Bus
from ledgerbus.bus.requester import Requester
from ledgerbus.errors import TaskTimeout
from ledgerbus.eventstore.fold import ConversationState, fold
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import Envelope, ErrorInfo, new_request


@dataclass
class Conversation:
    """One conversation as the ledger holds it, with shortcuts for the usual assertions."""

    conversation_id: str
    request: Envelope
    answer: Envelope  # the RESPONSE or ERROR to `request`
    events: list[Envelope] = field(default_factory=list)  # everything in the conversation, in ledger order

    @property
    def ok(self) -> bool:
        return self.answer.action is Action.RESPONSE

    @property
    def response(self) -> dict[str, Any] | None:
        """The RESPONSE payload, or None when the answer was an ERROR."""
        return self.answer.payload if self.ok else None

    @property
    def error(self) -> ErrorInfo | None:
        return self.answer.error

    @property
    def actions(self) -> list[str]:
        """Actions of the envelopes of the request's own task, in ledger order."""
        return [e.action.value for e in self.events if e.task_id == self.request.task_id]

    @property
    def progress(self) -> list[dict[str, Any]]:
        return [e.payload for e in self.events if e.task_id == self.request.task_id and e.action is Action.PROGRESS]

    @property
    def state(self) -> ConversationState:
        """The fold of every event of the conversation (sub-requests included)."""
        return fold(self.events)

    def by(self, agent: str) -> list[Envelope]:
        """Envelopes `agent` sent."""
        return [e for e in self.events if e.sender == agent]

    def timeline(self) -> str:
        """One line per event, for assertion messages."""
        return "\n".join(f"{e.sender} → {e.recipient} {e.action.value} {e.capability}"
                         + (f" {e.error.code}: {e.error.message}" if e.error else "") for e in self.events)


class AgentHarness:
    """Runs agents on a bus and sends them requests as `tester`; stops them on `close()`."""

    def __init__(self, bus: Bus, *, address: str = "tester", timeout: float = 10.0) -> None:
        self.bus = bus
        self.address = address
        self.timeout = timeout
        self.runtimes: dict[str, AgentRuntime] = {}
        self._requesters: dict[int, Requester] = {}

    async def start(self, *agents: Agent, **runtime_options: Any) -> None:
        """Start one runtime per agent not already running (options go to AgentRuntime)."""
        for agent in agents:
            if agent.name not in self.runtimes:
                rt = AgentRuntime(agent, self.bus, **runtime_options)
                await rt.start()
                self.runtimes[agent.name] = rt

    async def __call__(self, agent: Agent, capability: str, payload: Any, *, also: tuple[Agent, ...] = (),
                       timeout: float | None = None, validate: bool = True, **request_fields: Any) -> Conversation:
        """Run `agent` (and the agents in `also`), ask it `capability` with `payload`, wait for the
        answer, and return the conversation as recorded in the ledger. `validate=False` sends the payload
        unchecked, to test how the agent answers bad input."""
        await self.start(agent, *also)
        return await self.ask(agent, capability, payload, timeout=timeout, validate=validate, **request_fields)

    async def ask(self, agent: Agent, capability: str, payload: Any, *, timeout: float | None = None,
                  validate: bool = True, **request_fields: Any) -> Conversation:
        timeout = timeout or self.timeout
        requester = self._requesters.get(id(agent.registry))
        if requester is None:
            requester = await Requester(self.bus, self.address, registry=agent.registry).start()
            self._requesters[id(agent.registry)] = requester
        if validate:
            req = requester.build(agent.name, capability, payload, **request_fields)
        else:
            req = new_request(sender=self.address, recipient=agent.name, capability=capability, payload=payload,
                              **request_fields)
        final: Envelope | None = None
        async for ans in requester.stream(req, timeout=timeout):
            final = ans
        assert final is not None  # stream() ends with a RESPONSE/ERROR or raises TaskTimeout
        events = await self.conversation(req.conversation_id, until=final.id, timeout=timeout)
        return Conversation(req.conversation_id, req, final, events)

    async def conversation(self, conversation_id: str, *, until: str | None = None,
                           timeout: float = 5.0) -> list[Envelope]:
        """The conversation's envelopes from the ledger; with `until`, everything up to that envelope,
        waiting for it to be stored (an answer can reach us over core NATS before the stream has it)."""
        from ledgerbus.eventstore.jetstream import JetStreamLedger

        subject = self.bus.subjects.conversation(conversation_id)
        if until is None:
            return await JetStreamLedger(self.bus).envelopes(conversation_id)
        events: list[Envelope] = []
        seen = asyncio.Event()

        async def on_msg(msg: Any) -> None:
            env = self.bus.codec.decode(msg.data)
            events.append(env)
            if env.id == until:
                seen.set()

        sub = await self.bus.ordered(subject, cb=on_msg)
        try:
            await asyncio.wait_for(seen.wait(), timeout)
        except asyncio.TimeoutError:
            raise TaskTimeout(f"envelope {until} never appeared in the ledger within {timeout}s") from None
        finally:
            await sub.close()
        ids = [e.id for e in events]
        return events[: ids.index(until) + 1]  # what came later is another moment's business

    async def close(self) -> None:
        for requester in self._requesters.values():
            await requester.stop()
        await asyncio.gather(*(rt.stop(drain=False, timeout=2) for rt in self.runtimes.values()),
                             return_exceptions=True)
        self.runtimes.clear()

    async def __aenter__(self) -> "AgentHarness":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
