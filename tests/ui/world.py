"""A real run for the UI tests: an embedded nats-server, agents, the orchestrator and the recorder writing
a SQLite ledger, all live on an event loop in a thread while the browser looks at the UI."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any

from ledgerbus.agents.runtime import AgentRuntime
from ledgerbus.agents.sdk import Agent, AgentError
from ledgerbus.bus.connection import Bus
from ledgerbus.bus.server import EmbeddedServer, ServerConfig
from ledgerbus.eventstore.recorder import Recorder
from ledgerbus.eventstore.sqlite import SQLiteEventStore
from ledgerbus.orchestrator.backoff import Backoff, RetryPolicy
from ledgerbus.orchestrator.engine import Orchestrator
from ledgerbus.orchestrator.plan import Plan, Step
from ledgerbus.orchestrator.policy import FallbackValue, PolicySet, RateLimitPolicy, TaskPolicy
from ledgerbus.schemas.capability import CapabilityRegistry

FAST = TaskPolicy(receipt_timeout=1.0, stall_after=2.0, timeout=5.0, retry=RetryPolicy(3, Backoff(0.05, 2.0, 0.2)))
# The shaky step: silent after its ACK (a stall), retried, then refused for good: it falls back.
SHAKY = TaskPolicy(receipt_timeout=1.0, stall_after=0.4, timeout=5.0, retry=RetryPolicy(2, Backoff(0.05, 2.0, 0.1)),
                   fallback=FallbackValue({"text": "(unavailable)"}))


class Plans:
    capabilities = frozenset({"test.ok", "test.shaky", "test.fanin"})

    def plan(self, capability: str, request: Mapping[str, Any]) -> Plan:
        if capability == "test.fanin":  # two independent steps, and one that needs both
            return Plan([Step("left", "alpha.work", {"x": 1}), Step("right", "alpha.work", {"x": 2}),
                         Step("join", "alpha.work", {"x": 3}, depends_on=("left", "right"))])
        steps = [Step("fetch", "alpha.work", {"x": 1})]
        if capability == "test.shaky":
            steps.append(Step("shaky", "shaky.work", {"x": 2}, depends_on=("fetch",)))
        return Plan(steps)


def _agents(reg: CapabilityRegistry, hang: asyncio.Event) -> list[Agent]:
    alpha = Agent("alpha", registry=reg)

    @alpha.capability("alpha.work", input=dict, output=dict)
    async def work(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
        return {"ok": True, "attempt": ctx.attempt}

    shaky = Agent("shaky", registry=reg)

    @shaky.capability("shaky.work", input=dict, output=dict, timeout=1.0)
    async def shake(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
        if ctx.attempt == 1:
            await hang.wait()  # acknowledged, then silence
        raise AgentError("UPSTREAM_DOWN", "the upstream service refused the request", retryable=False)

    return [alpha, shaky]


class World:
    def __init__(self, tmp: Path) -> None:
        self.server = EmbeddedServer(ServerConfig(data_dir=tmp / "nats", sync_interval="2m")).start()
        self.ledger_path = tmp / "ledger.db"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(self._start())

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        self.bus = await Bus.connect(self.server.url, name="ui-test")
        self.store = SQLiteEventStore(self.ledger_path)
        self.recorder = Recorder(self.bus, self.store)
        await self.recorder.start()
        reg = CapabilityRegistry()
        self._hang = asyncio.Event()
        self.runtimes = [AgentRuntime(a, self.bus, claim_lease=0.6) for a in _agents(reg, self._hang)]
        for rt in self.runtimes:
            await rt.start()
        policies = PolicySet(default=FAST, rate=RateLimitPolicy(global_rate=None, agent_rate=None),
                             per_capability={"shaky.work": SHAKY})
        self.orch = Orchestrator(self.bus, decomposer=Plans(), policies=policies, registry=reg, rng=random.Random(3))
        await self.orch.start()

    def run(self, capability: str, payload: dict[str, Any]) -> Any:
        async def go() -> Any:
            result = await asyncio.wait_for(self.orch.run(capability, payload), 20)
            await self.recorder.catch_up()
            return result

        return self.call(go())

    def start_run(self, capability: str, payload: dict[str, Any]) -> Any:
        """Start a conversation without waiting for it (a future of its result)."""
        return asyncio.run_coroutine_threadsafe(self.orch.run(capability, payload), self.loop)

    def close(self) -> None:
        async def go() -> None:
            self._hang.set()
            await self.orch.stop()
            await asyncio.gather(*(rt.stop(drain=False, timeout=2) for rt in self.runtimes), return_exceptions=True)
            await self.recorder.stop()
            await self.bus.close()
            self.store.close()

        try:
            self.call(go())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.server.stop()


def dead_letter(url: str) -> tuple[str, str]:
    """A request the `ghost` type took twice and never acknowledged, dead-lettered after MaxDeliver=2 by the
    agents' DeadLetterWatcher: (its conversation id, the letter id). Run on a loop of its own thread, so that
    a test holding Playwright's loop can call it."""
    from concurrent.futures import ThreadPoolExecutor

    from ledgerbus.bus.streams import ConsumerSettings, consumer_name
    from ledgerbus.schemas.envelope import new_request
    from ledgerbus.security.deadletters import DeadLetterWatcher

    async def go() -> tuple[str, str]:
        bus = await Bus.connect(url, name="ui-test-deadletter")
        try:
            sub = await bus.agent_consumer("ghost", ConsumerSettings(ack_wait=0.3, max_deliver=2))
            watcher = await DeadLetterWatcher(bus, consumer=consumer_name("ghost"), sender="ghost").start()
            req = new_request(sender="tester", recipient="ghost", capability="ghost.work", payload={"n": 1})
            await bus.publish(req)
            loop = asyncio.get_running_loop()
            until = loop.time() + 15
            while not watcher.published:  # taken and never acknowledged: a crashing instance, twice
                assert loop.time() < until, "no DEAD_LETTER within 15 s"
                try:
                    await sub.fetch(1, timeout=0.5)
                except Exception:  # nothing to take right now: the redelivery is not due yet
                    pass
            await watcher.stop()
            return req.conversation_id, watcher.published[0].id
        finally:
            await bus.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, go()).result(30)
