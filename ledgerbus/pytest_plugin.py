"""pytest plugin: a real nats-server per test, a connected Bus, and a SQLite ledger.

    def test_my_agent(bus, ledger): ...

Options: `--nats-url URL` runs the suite against an existing server or cluster (each test gets its
own subject prefix, so tests never see each other's streams); `--nats-docker` starts the official
NATS image through testcontainers instead of the binary (needs Docker).
Imports stay cheap: ledgerbus itself is imported only when a fixture is used.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ledgerbus.bus.connection import Bus
    from ledgerbus.bus.server import EmbeddedServer
    from ledgerbus.eventstore.sqlite import SQLiteEventStore


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ledgerbus")
    group.addoption("--nats-url", default=os.environ.get("LEDGERBUS_TEST_NATS_URL"),
                    help="run against this NATS server instead of starting one per test")
    group.addoption("--nats-docker", action="store_true", default=False,
                    help="start the official NATS image via testcontainers (needs Docker)")


class NatsServer:
    """A server for one test: its URL, and for a local binary the means to kill and restart it."""

    def __init__(self, url: str, *, server: "EmbeddedServer | None" = None, container: Any = None,
                 prefix: str = "lb") -> None:
        self.url = url
        self.server = server
        self.container = container
        self.prefix = prefix

    @property
    def data_dir(self) -> Path | None:
        return self.server.config.data_dir if self.server else None

    def kill(self) -> None:
        """SIGKILL the server process (fault tests)."""
        if self.server is None:
            pytest.skip("cannot kill a server this test did not start")
        self.server.kill()

    def restart(self) -> None:
        """Start again on the same port and store directory."""
        if self.server is None:
            pytest.skip("cannot restart a server this test did not start")
        self.server.config.port = self.server.port or 0
        self.server.owned = False
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self.container is not None:
            self.container.stop()


@pytest.fixture
def nats_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    url = request.config.getoption("--nats-url")
    if url:
        yield NatsServer(url, prefix="t" + uuid.uuid4().hex[:10])
        return
    if request.config.getoption("--nats-docker"):
        try:
            from testcontainers.core.container import DockerContainer
        except ImportError:
            pytest.skip("--nats-docker needs the testcontainers package")
        container = DockerContainer("nats:2.10").with_command("-js").with_exposed_ports(4222)
        container.start()
        host, port = container.get_container_host_ip(), container.get_exposed_port(4222)
        handle = NatsServer(f"nats://{host}:{port}", container=container)
        yield handle
        handle.stop()
        return
    from ledgerbus.bus.server import EmbeddedServer, ServerConfig

    data_dir = tmp_path_factory.mktemp("nats")
    # sync_interval: the default 2m is enough for process crashes (the OS has the pages) and keeps tests fast.
    server = EmbeddedServer(ServerConfig(data_dir=data_dir, sync_interval="2m")).start()
    handle = NatsServer(server.url, server=server)
    yield handle
    handle.stop()


@pytest.fixture
async def bus(nats_server: NatsServer) -> AsyncIterator["Bus"]:
    from ledgerbus.bus.connection import Bus

    b = await Bus.connect(nats_server.url, prefix=nats_server.prefix, name="pytest")
    yield b
    await b.close()


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator["SQLiteEventStore"]:
    from ledgerbus.eventstore.sqlite import SQLiteEventStore

    store = SQLiteEventStore(tmp_path / "ledger.db")
    yield store
    store.close()
