"""CLI tests: typer's CliRunner against a real nats-server, with real agents served from a background loop.

CliRunner runs a command synchronously (each command calls asyncio.run), so these tests are plain
functions and the agents they talk to live on an event loop in another thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from ledgerbus.cli.main import app


class Background:
    """An event loop in a thread, with its own Bus, where agents (and the orchestrator) run during a CLI test."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url, self.prefix = url, prefix
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runtimes: list[Any] = []
        self.bus: Any = self.call(self._connect())
        self._stop = asyncio.Event()
        self._serving: list[Any] = []

    async def _connect(self) -> Any:
        from ledgerbus.bus.connection import Bus

        return await Bus.connect(self.url, prefix=self.prefix, name="cli-test-agents")

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 15.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def agents(self, *agents: Any) -> None:
        from ledgerbus.agents.runtime import AgentRuntime

        async def go() -> None:
            for a in agents:
                rt = AgentRuntime(a, self.bus)
                await rt.start()
                self.runtimes.append(rt)

        self.call(go())

    def orchestrator(self) -> None:
        from ledgerbus.examples import ContentPipeline, register
        from ledgerbus.orchestrator.engine import Orchestrator

        register()

        async def go() -> None:
            orch = Orchestrator(self.bus, decomposer=ContentPipeline())
            self._serving.append(orch)
            self._serving.append(asyncio.ensure_future(orch.serve(stop=self._stop)))

        self.call(go())

    def publish(self, *envelopes: Any) -> None:
        async def go() -> None:
            for env in envelopes:
                await self.bus.publish(env)

        self.call(go())

    def close(self) -> None:
        async def go() -> None:
            self._stop.set()
            for item in self._serving:
                if isinstance(item, asyncio.Future):
                    await asyncio.wait_for(item, 5)
                else:
                    await item.stop()
            await asyncio.gather(*(rt.stop(drain=False, timeout=2) for rt in self.runtimes), return_exceptions=True)
            await self.bus.close()

        try:
            self.call(go())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)


@pytest.fixture(autouse=True)
def no_saved_contexts(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's selected context and LEDGERBUS_* credentials must not reach the server a test names."""
    from ledgerbus.cli.connopts import ENV

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))
    for var in ENV.values():
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def background(nats_server: Any) -> Iterator[Background]:
    bg = Background(nats_server.url, nats_server.prefix)
    yield bg
    bg.close()


@pytest.fixture
def examples(background: Background) -> Background:
    """The three offline example agents, live on the test's server."""
    from ledgerbus.examples import AGENTS, register

    register()

    background.agents(*AGENTS)
    return background


Invoke = Callable[..., Result]


@pytest.fixture
def cli(nats_server: Any) -> Invoke:
    """Run `ledgerbus ARGS… --url <test server> --prefix <test prefix>` and return the click Result."""
    # The developer's own settings must not leak in: every server a test talks to is named explicitly.
    runner = CliRunner(env={"LEDGERBUS_NATS_URL": None, "LEDGERBUS_PREFIX": None, "LEDGERBUS_DATA_DIR": None})

    def invoke(*args: str, server: bool = True, input: str | None = None) -> Result:
        extra = ["--url", nats_server.url, "--prefix", nats_server.prefix] if server else []
        return runner.invoke(app, [*args, *extra], input=input, catch_exceptions=False)

    return invoke


@pytest.fixture
def unused_port() -> int:
    from ledgerbus.bus.server import free_port

    return free_port()
