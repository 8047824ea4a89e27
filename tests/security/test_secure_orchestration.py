"""The real components under least privilege: an orchestrator, two agents and a recorder, each as its own
user, run a conversation to the end without a single permission violation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ledgerbus.agents.runtime import AgentRuntime
from ledgerbus.agents.sdk import Agent
from ledgerbus.eventstore.fold import ConversationStatus
from ledgerbus.eventstore.recorder import Recorder
from ledgerbus.eventstore.sqlite import SQLiteEventStore
from ledgerbus.orchestrator.engine import Orchestrator
from ledgerbus.orchestrator.plan import Plan, Step
from ledgerbus.orchestrator.policy import PolicySet, RateLimitPolicy
from ledgerbus.schemas.capability import CapabilityRegistry


class TwoSteps:
    def plan(self, capability: str, request: Mapping[str, Any]) -> Plan:
        return Plan([Step("a", "alpha.work", {"n": 1}), Step("b", "beta.work", {"n": 2}, depends_on=("a",))])


def worker(name: str, reg: CapabilityRegistry) -> Agent:
    agent = Agent(name, registry=reg)

    @agent.capability(f"{name}.work", input=dict, output=dict)
    async def work(inp: dict[str, Any], ctx: Any) -> dict[str, Any]:
        return {"by": name, "n": inp.get("n")}

    return agent


async def test_orchestrator_agents_and_recorder_need_nothing_more(secured, tmp_path):
    reg = CapabilityRegistry()
    buses = {n: await secured.connect(n) for n in ("alpha", "beta", "orchestrator", "recorder")}
    store = SQLiteEventStore(tmp_path / "ledger.db")
    try:
        orch = Orchestrator(buses["orchestrator"], decomposer=TwoSteps(), registry=reg,
                            policies=PolicySet(rate=RateLimitPolicy(global_rate=None, agent_rate=None)))
        async with AgentRuntime(worker("alpha", reg), buses["alpha"]), \
                AgentRuntime(worker("beta", reg), buses["beta"]), Recorder(buses["recorder"], store) as rec, orch:
            # Signed envelopes name their signer: the root REQUEST comes from the orchestrator itself here
            # (a client of its own would send it to `serve()` as itself).
            result = await orch.run("test.two", {}, requester="orchestrator")
            assert result.status is ConversationStatus.DONE, result.state
            assert await orch.recover() == []  # reads the whole ledger as the orchestrator user
            await rec.catch_up()
        senders = {e.sender for e in store.envelopes()}
        assert senders == {"orchestrator", "alpha", "beta"}
        rejects = store.db.execute("select code, reason from rejects").fetchall()
        assert rejects == [], rejects  # every signature checked out
        for name, bus in buses.items():
            assert not bus.violations, (name, bus.violations)
    finally:
        store.close()
        for bus in buses.values():
            await bus.close()
