import msgspec

from ledgerbus.agents.runtime import AgentRuntime
from ledgerbus.agents.sdk import Agent
from ledgerbus.bus.requester import Requester
from ledgerbus.eventstore.recorder import Recorder
from ledgerbus.schemas.capability import CapabilityRegistry


class Echo(msgspec.Struct):
    text: str


async def test_smoke(bus, ledger):
    reg = CapabilityRegistry()
    agent = Agent("echo", registry=reg)

    @agent.capability("echo.say")
    async def say(inp: Echo, ctx) -> Echo:
        return Echo(inp.text.upper())

    async with AgentRuntime(agent, bus), Recorder(bus, ledger) as rec:
        req = await Requester(bus, "tester", registry=reg).start()
        resp = await req.request("echo", "echo.say", {"text": "hi"}, timeout=5)
        assert resp.payload == {"text": "HI"}
        await rec.catch_up()
    actions = [e.action.value for e in ledger.envelopes()]
    assert actions == ["REQUEST", "ACK", "RESPONSE"]
