"""ledgerbus on a local three-node nats-server cluster, the ledger stream at R3: the same workload as
bench/peers/ledgerbus.py, the orchestrator on node 1 and the agents on node 2 (tests/faults/cluster.py
builds the cluster). Not a peer: its figures stand beside ledgerbus's R1 ones."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType


from bench.peers import PeerInfo
from bench.peers.ledgerbus import LedgerbusDriver

ROOT = Path(__file__).resolve().parent.parent.parent

INFO = PeerInfo(
    name="ledgerbus_r3",
    label="ledgerbus, 3-node cluster, ledger R3",
    setup="three nats-server processes on loopback routes (tests/faults/cluster.py), all on this machine; "
          "orchestrator connected to node 1, agents to node 2; otherwise as ledgerbus",
    durability="each append stored and fsynced (`sync_interval: always`) on a quorum (2 of 3) before its PubAck",
    peer=False,
)


def _cluster_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ledgerbus_bench_cluster", ROOT / "tests" / "faults" / "cluster.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def missing_extra() -> str | None:
    return None if (ROOT / "tests" / "faults" / "cluster.py").exists() else "tests/faults/cluster.py is not in this checkout"


class ClusterDriver(LedgerbusDriver):
    _urls: tuple[str, str] | None = None

    async def start(self, workdir: Path) -> None:
        # A KV bucket an agent or the orchestrator creates on a fresh cluster answers its first put with
        # "no response from stream" until the bucket's stream has elected a leader: start again (the
        # buckets then exist) rather than measure a cluster still settling.
        for attempt in range(5):
            try:
                await super().start(workdir)
                return
            except Exception:
                if attempt == 4:
                    raise
                await LedgerbusDriver.stop(self)
                self.orch = self.worker = self.bus = None
                await asyncio.sleep(1)

    async def urls(self, workdir: Path) -> tuple[str, str]:
        if self._urls is None:
            self._urls = await self._start_cluster(workdir)
        return self._urls

    async def _start_cluster(self, workdir: Path) -> tuple[str, str]:
        import nats

        from ledgerbus.bus.streams import LedgerConfig
        from ledgerbus.bus.subjects import Subjects

        self.cluster = await asyncio.to_thread(_cluster_module().Cluster.start, workdir)
        urls = self.cluster.urls
        # The meta leader is elected a moment after the routes connect: create the R3 stream once it is.
        nc = await nats.connect(urls[0])
        try:
            js = nc.jetstream(timeout=2)
            deadline = time.monotonic() + 30
            while True:
                try:
                    await js.add_stream(LedgerConfig(replicas=3).stream_config(Subjects("peers")))
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the cluster did not accept an R3 stream within 30 s") from None
                    await asyncio.sleep(0.2)
        finally:
            await nc.close()
        return urls[0], urls[1]

    async def stop(self) -> None:
        await super().stop()
        if self.cluster is not None:
            await asyncio.to_thread(self.cluster.stop)


def driver() -> ClusterDriver:
    return ClusterDriver(replicas=3)
