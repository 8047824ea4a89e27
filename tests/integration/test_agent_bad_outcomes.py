"""A handler's outcome that cannot be sent as it is still becomes an ERROR, and the handler runs once.

Without that answer the request stays unacked: it is redelivered and the handler runs again for the
same failure until MaxDeliver dead-letters it."""

from __future__ import annotations

from typing import Any

import msgspec
import pydantic
import pytest

from ledgerbus.agents.runtime import AgentRuntime
from ledgerbus.agents.sdk import Agent, AgentError
from ledgerbus.bus.requester import Requester
from ledgerbus.bus.streams import ConsumerSettings
from ledgerbus.schemas.capability import CapabilityRegistry
from ledgerbus.schemas.codes import Action


class Mode(msgspec.Struct):
    mode: str


class Text(pydantic.BaseModel):
    text: str


class Opaque:
    """Not JSON: msgspec has no encoding for it."""


def agent(calls: list[str]) -> tuple[Agent, CapabilityRegistry]:
    reg = CapabilityRegistry()
    a = Agent("victim", registry=reg)

    @a.capability("victim.dict")
    async def as_dict(inp: Mode) -> dict:
        calls.append(inp.mode)
        if inp.mode == "opaque":
            return {"x": Opaque()}
        if inp.mode == "huge-exception":
            raise ValueError("x" * 600_000)
        if inp.mode == "opaque-details":
            raise AgentError("REFUSED", "nope", details={"obj": Opaque()})
        return {"ok": True}

    @a.capability("victim.model")
    async def as_model(inp: Mode) -> Text:
        calls.append(inp.mode)
        return None  # type: ignore[return-value]  # the handler's bug under test

    return a, reg


@pytest.mark.parametrize("capability,mode,code,says", [
    ("victim.dict", "opaque", "INVALID_OUTPUT", "cannot be encoded as JSON"),
    ("victim.model", "none", "INVALID_OUTPUT", "cannot be serialised"),
    ("victim.dict", "huge-exception", "HANDLER_ERROR", "ValueError: xxx"),
    ("victim.dict", "opaque-details", "REFUSED", "nope"),
])
async def test_an_outcome_that_cannot_be_sent_becomes_an_error_once(bus: Any, capability: str, mode: str,
                                                                   code: str, says: str) -> None:
    calls: list[str] = []
    a, reg = agent(calls)
    async with AgentRuntime(a, bus, consumer=ConsumerSettings(ack_wait=1.0, max_deliver=3), dead_letters=False):
        client = await Requester(bus, "tester", registry=reg).start()
        answers = [ans async for ans in client.stream(client.build("victim", capability, {"mode": mode}), timeout=10)]
        await client.stop()
    last = answers[-1]
    assert last.action is Action.ERROR and last.error is not None
    assert last.error.code == code and says in last.error.message
    assert len(last.error.message) < 10_000
    if mode == "opaque-details":
        assert "Opaque" in last.error.details["unencodable"]
    assert calls == [mode]  # answered: not redelivered, not run again



async def test_an_answer_too_large_for_the_server_becomes_an_error_once(tmp_path: Any) -> None:
    """A server whose max_payload (64 KiB) is below the codec's limit: a 100 KB RESPONSE can never be
    published. It ends as an ERROR that fits, at once, not as a request redelivered until it is
    dead-lettered (or, before that, handled again)."""
    from ledgerbus.bus.connection import Bus
    from ledgerbus.bus.server import EmbeddedServer, ServerConfig

    server = EmbeddedServer(ServerConfig(data_dir=tmp_path / "nats", sync_interval="2m", max_payload=64 * 1024)).start()
    bus = await Bus.connect(server.url, name="small")
    calls: list[int] = []
    reg = CapabilityRegistry()
    a = Agent("wordy", registry=reg)

    @a.capability("wordy.say", input=dict, output=dict)
    async def say(inp: dict) -> dict:
        calls.append(1)
        return {"text": "x" * int(inp["size"])}

    try:
        async with AgentRuntime(a, bus, consumer=ConsumerSettings(ack_wait=1.0, max_deliver=3), announce=False):
            client = await Requester(bus, "tester", registry=reg).start()
            answers = [ans async for ans in client.stream(client.build("wordy", "wordy.say", {"size": 100_000}),
                                                          timeout=10)]
            small = await client.request("wordy", "wordy.say", {"size": 10}, timeout=10)
            await client.stop()
    finally:
        await bus.close()
        server.stop()
    last = answers[-1]
    assert last.action is Action.ERROR and last.error is not None
    assert last.error.code == "INVALID_OUTPUT" and "could not be published" in last.error.message, last.error
    assert small.payload == {"text": "x" * 10}
    assert calls == [1, 1]
