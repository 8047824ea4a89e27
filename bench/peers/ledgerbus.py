"""ledgerbus: the Orchestrator with ContentPipeline in the trial's process, the three trivial pipeline
agents in a `bench.workers agents` process, an embedded nats-server with `sync_interval: always`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.peers import Json, PeerInfo

INFO = PeerInfo(
    name="ledgerbus",
    label="ledgerbus",
    setup="embedded nats-server (JetStream file store); Orchestrator + ContentPipeline in the client process, "
          "research/writing/editor AgentRuntimes in one agent process (bench.workers agents 3 3)",
    durability="every envelope a JetStream append, `sync_interval: always` (fsync before each PubAck)",
    peer=False,
)

#: The agents' concurrency: enough for 200 conversations' research steps at once.
AGENT_CONCURRENCY = 600


class LedgerbusDriver:
    def __init__(self, replicas: int = 1) -> None:
        self.replicas = replicas
        self.server: Any = None
        self.cluster: Any = None
        self.bus: Any = None
        self.worker: Any = None
        self.orch: Any = None

    async def urls(self, workdir: Path) -> tuple[str, str]:
        """(the orchestrator's server, the agents' server)."""
        from ledgerbus.bus.server import EmbeddedServer, ServerConfig

        self.server = EmbeddedServer(ServerConfig(data_dir=workdir, sync_interval="always")).start()
        return self.server.url, self.server.url

    async def start(self, workdir: Path) -> None:
        from bench.conversations import unlimited_policies
        from bench.procs import spawn
        from ledgerbus.examples import ContentPipeline, register
        from ledgerbus.bus.connection import Bus
        from ledgerbus.bus.streams import LedgerConfig
        from ledgerbus.orchestrator.engine import Orchestrator

        register()  # the example capabilities, so the orchestrator validates the pipeline's payloads
        url, agents_url = await self.urls(workdir)
        self.bus = await Bus.connect(url, prefix="peers", name="bench-peers",
                                     ledger=LedgerConfig(replicas=self.replicas))
        self.worker = await spawn("agents", agents_url, "peers", "3", "3", str(AGENT_CONCURRENCY),
                                  "--handlers", "pipeline")
        self.orch = await Orchestrator(self.bus, decomposer=ContentPipeline(), policies=unlimited_policies()).start()

    async def run(self, topic: str) -> Json:
        from ledgerbus.examples import ARTICLE

        res = await self.orch.run(ARTICLE, {"topic": topic, "subtopics": 3})
        if not res.ok:
            raise RuntimeError(f"conversation {res.conversation_id} ended {res.status}")
        return dict(res.result)

    async def stop(self) -> None:
        if self.orch is not None:
            await self.orch.stop()
        if self.worker is not None:
            await self.worker.stop()
        if self.bus is not None:
            await self.bus.close()
        if self.server is not None:
            self.server.stop()


def driver() -> LedgerbusDriver:
    return LedgerbusDriver()
