"""pytest plugin: a real nats-server per test, a connected Bus, a SQLite ledger, and `run_agent`.

    async def test_my_agent(run_agent):
        conv = await run_agent(agent, "echo.say", {"text": "hi"})
        assert conv.response == {"text": "HI"}

Options: `--nats-url URL` runs the suite against an existing server or cluster (each test gets its
own subject prefix, so tests never see each other's streams); `--nats-docker` starts the official
NATS image through testcontainers instead of the binary (needs Docker and `ledgerbus[docker]`).
Imports stay cheap: ledgerbus itself is imported only when a fixture is used.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

try:  # async fixtures that work in pytest-asyncio's strict mode too, so user projects need no config
    import pytest_asyncio

    async_fixture: Any = pytest_asyncio.fixture
except ImportError:  # pragma: no cover - the `test` extra brings pytest-asyncio
    async_fixture = pytest.fixture

if TYPE_CHECKING:
    from ledgerbus.bus.connection import Bus
    from ledgerbus.bus.server import EmbeddedServer
    from ledgerbus.eventstore.sqlite import SQLiteEventStore
    from ledgerbus.testing import AgentHarness

NATS_IMAGE = "nats:2.10"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ledgerbus")
    group.addoption("--nats-url", default=os.environ.get("LEDGERBUS_TEST_NATS_URL"),
                    help="run against this NATS server instead of starting one per test")
    group.addoption("--nats-docker", action="store_true", default=False,
                    help="start the official NATS image via testcontainers (needs Docker)")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--nats-docker", default=False):
        try:
            import testcontainers  # noqa: F401
        except ImportError:
            raise pytest.UsageError("--nats-docker needs testcontainers: pip install 'ledgerbus[docker]'") from None


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


def _docker_server() -> NatsServer:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    try:
        container = DockerContainer(NATS_IMAGE).with_command("-js").with_exposed_ports(4222)
        container.start()
    except Exception as exc:  # docker.errors.DockerException and friends: say what is missing, in one line
        pytest.fail(f"--nats-docker: cannot start {NATS_IMAGE} ({type(exc).__name__}: {exc}); is Docker running?",
                    pytrace=False)
    try:
        wait_for_logs(container, "Server is ready", timeout=30)
        host, port = container.get_container_host_ip(), container.get_exposed_port(4222)
    except Exception:
        container.stop()
        raise
    return NatsServer(f"nats://{host}:{port}", container=container)


@pytest.fixture
def nats_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    url = request.config.getoption("--nats-url")
    if url:
        yield NatsServer(url, prefix="t" + uuid.uuid4().hex[:10])
        return
    if request.config.getoption("--nats-docker"):
        handle = _docker_server()
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


@async_fixture
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


@async_fixture
async def run_agent(bus: "Bus") -> AsyncIterator["AgentHarness"]:
    """`await run_agent(agent, capability, payload, also=(other agents,))` → the Conversation from the ledger:
    `.response`, `.error`, `.actions`, `.progress`, `.events`, `.state` (the fold). Agents stop after the test."""
    from ledgerbus.testing import AgentHarness

    harness = AgentHarness(bus)
    yield harness
    await harness.close()
