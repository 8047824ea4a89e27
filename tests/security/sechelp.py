"""Helpers shared by the security tests."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from ledgerbus.bus.server import EmbeddedServer, ServerConfig
from ledgerbus.bus.streams import ConsumerSettings
from ledgerbus.security.deployment import Deployment, TLSFiles
from ledgerbus.security.securebus import SecureBus, provision


async def eventually(pred: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Wait for `pred` to hold (an event we cannot await directly, e.g. an async server -ERR)."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


@dataclass
class Secured:
    deployment: Deployment
    server: EmbeddedServer
    admin: SecureBus
    dir: Path

    @property
    def secrets(self) -> Path:
        return self.dir / "secrets"

    async def connect(self, name: str) -> SecureBus:
        return await SecureBus.connect_as(self.server.url, self.deployment, name)


@contextlib.asynccontextmanager
async def secured_deployment(tmp_path: Path, agents: list[str], clients: tuple[str, ...] = ("orchestrator",),
                             tls: TLSFiles | None = None, admin_tls: object = None) -> AsyncIterator[Secured]:
    """A secured embedded server for `agents` and `clients` (+ recorder, admin), provisioned by admin;
    the seeds and deployment.json are in tmp_path/secrets."""
    dep = Deployment.generate(agents, clients=clients)
    dep.save(tmp_path / "secrets")
    dep = Deployment.load(tmp_path / "secrets")  # what a real process does: read the files
    server = await asyncio.to_thread(EmbeddedServer(ServerConfig(
        data_dir=tmp_path / "nats", sync_interval="2m", extra=dep.server_lines(tls=tls))).start)
    try:
        admin = await SecureBus.connect_as(server.url, dep, "admin", tls=admin_tls)
        try:
            await provision(admin, dep, consumers={a: ConsumerSettings(ack_wait=5) for a in agents})
            yield Secured(dep, server, admin, tmp_path)
        finally:
            await admin.close()
    finally:
        await asyncio.to_thread(server.stop)
