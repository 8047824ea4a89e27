"""A secured deployment on a real nats-server: nkey users with role permissions, signed envelopes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ledgerbus.bus.server import EmbeddedServer, ServerConfig
from ledgerbus.bus.streams import ConsumerSettings
from ledgerbus.security.deployment import Deployment
from ledgerbus.security.securebus import SecureBus, provision

AGENTS = ["alpha", "beta"]


@dataclass
class Secured:
    deployment: Deployment
    server: EmbeddedServer
    admin: SecureBus
    dir: Path

    async def connect(self, name: str) -> SecureBus:
        return await SecureBus.connect_as(self.server.url, self.deployment, name)


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[Secured]:
    dep = Deployment.generate(AGENTS, clients=("orchestrator",))
    dep.save(tmp_path / "secrets")
    dep = Deployment.load(tmp_path / "secrets")  # what a real process does: read the files
    server = await asyncio.to_thread(
        EmbeddedServer(ServerConfig(data_dir=tmp_path / "nats", sync_interval="2m", extra=dep.server_lines())).start
    )
    admin = await SecureBus.connect_as(server.url, dep, "admin")
    await provision(admin, dep, consumers={a: ConsumerSettings(ack_wait=5) for a in AGENTS})
    yield Secured(dep, server, admin, tmp_path)
    await admin.close()
    await asyncio.to_thread(server.stop)
