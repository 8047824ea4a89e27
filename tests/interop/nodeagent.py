"""Running the JavaScript example agent (examples/node-agent) as a real subprocess.

Node and the example's node_modules are part of the test environment (.ci/run installs both), so a
missing one fails the test with what to do, instead of skipping it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "node-agent"
SCHEMAS = ROOT / "schemas"


def node() -> str:
    """The node binary, or a failed test saying how to get it."""
    path = shutil.which("node")
    if path is None:
        pytest.fail("node is not on PATH: the interop tests run the JavaScript example agent "
                    "(install Node >= 18, e.g. `apt-get install -y nodejs npm`; .ci/run does)", pytrace=False)
    return path


def example_ready() -> str:
    """node, once the example's dependencies are installed."""
    binary = node()
    for package in ("nats", "ajv"):
        if not (EXAMPLE / "node_modules" / package / "package.json").is_file():
            pytest.fail(f"{EXAMPLE / 'node_modules' / package} is missing: run `npm ci` in {EXAMPLE} "
                        "(.ci/run does it before pytest)", pytrace=False)
    return binary


class NodeAgent:
    """`node agent.mjs` against a test's server: started, ready (in the directory), stopped by SIGTERM."""

    def __init__(self, url: str, prefix: str, *, agent_type: str = "jstext") -> None:
        self.url, self.prefix, self.agent_type = url, prefix, agent_type
        self.proc: asyncio.subprocess.Process | None = None
        self.instance = ""
        self.stderr: list[str] = []
        self._drain: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 20.0) -> "NodeAgent":
        env = {**os.environ, "LEDGERBUS_NATS_URL": self.url, "LEDGERBUS_PREFIX": self.prefix,
               "LEDGERBUS_AGENT_TYPE": self.agent_type}
        self.proc = await asyncio.create_subprocess_exec(
            example_ready(), "agent.mjs", cwd=EXAMPLE, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        self._drain = asyncio.create_task(self._read_stderr())
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                line = (await self.proc.stdout.readline()).decode().strip()
        except TimeoutError:
            await self.stop()
            pytest.fail(f"node agent not ready within {timeout}s; stderr: {self.log()}", pytrace=False)
        if not line.startswith(f"ready {self.agent_type} "):
            await self.stop()
            pytest.fail(f"node agent did not start (said {line!r}); stderr: {self.log()}", pytrace=False)
        self.instance = line.split()[2]
        return self

    async def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async for raw in self.proc.stderr:
            self.stderr.append(raw.decode(errors="replace").rstrip())

    def log(self) -> str:
        return "\n".join(self.stderr) or "(nothing)"

    async def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, and the exit status (the agent drains, withdraws from the directory, exits 0)."""
        if self.proc is None:
            return 0
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(timeout):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._drain is not None:
            await self._drain
        return self.proc.returncode if self.proc.returncode is not None else -1

    async def __aenter__(self) -> "NodeAgent":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
