"""Restate: a single-node restate-server (the npm package's binary) as a child process, the pipeline
as a Python service (restate-sdk on hypercorn) in another; the client calls the ingress over HTTP."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.peers import Json, PeerInfo

HERE = Path(__file__).resolve().parent
NPM_DIR = HERE / "restate_server"  # `npm ci` here installs the server (README, Performance)
SERVER_ENV = "LEDGERBUS_BENCH_RESTATE_SERVER"  # or point this at a restate-server binary

INFO = PeerInfo(
    name="restate",
    label="Restate (single node)",
    setup="`restate-server` (npm @restatedev/restate-server, default config, own base dir) as a child process; "
          "the pipeline a restate-sdk Service on hypercorn (HTTP/2) in a second process, registered through "
          "the admin API; the client POSTs each conversation to the ingress (httpx); the three research "
          "steps are ctx.run entries awaited with restate.gather, then write, edit",
    durability="every journal entry appended to the server's local log (RocksDB WAL, fsync on, the default) "
               "before the handler goes on",
    packages=("restate-sdk", "hypercorn", "httpx"),
)


def server_binary() -> str | None:
    if os.environ.get(SERVER_ENV):
        return os.environ[SERVER_ENV] if Path(os.environ[SERVER_ENV]).exists() else None
    native = NPM_DIR / "node_modules" / "@restatedev" / "restate-server-linux-x64" / "bin" / "restate-server"
    for candidate in (native, NPM_DIR / "node_modules" / ".bin" / "restate-server"):
        if candidate.exists():
            return str(candidate)
    return shutil.which("restate-server")


def missing_extra() -> str | None:
    if server_binary():
        return None
    if os.environ.get(SERVER_ENV):
        return f"{SERVER_ENV}={os.environ[SERVER_ENV]} does not exist"
    return f"no restate-server: run `npm ci` in {NPM_DIR.relative_to(HERE.parent.parent)} (or set {SERVER_ENV})"


def extra_versions() -> str:
    lock = NPM_DIR / "node_modules" / "@restatedev" / "restate-server" / "package.json"
    if lock.exists():
        import json

        return f"restate-server {json.loads(lock.read_text())['version']}"
    return ""


class RestateDriver:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.http: Any = None
        self.ingress = ""

    def _spawn(self, cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with open(log, "wb") as f:
            p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        self.procs.append(p)
        return p

    async def start(self, workdir: Path) -> None:
        import httpx

        from ledgerbus.bus.server import free_port

        ingress, admin, fabric, svc = free_port(), free_port(), free_port(), free_port()
        env = {**os.environ, "RESTATE_BASE_DIR": str(workdir / "restate"), "RESTATE_NODE_NAME": "bench",
               "RESTATE_LISTEN_MODE": "tcp", "RESTATE_BIND_ADDRESS": f"127.0.0.1:{fabric}",
               "RESTATE_ADVERTISED_ADDRESS": f"http://127.0.0.1:{fabric}",
               "RESTATE_INGRESS__BIND_ADDRESS": f"127.0.0.1:{ingress}",
               "RESTATE_ADMIN__BIND_ADDRESS": f"127.0.0.1:{admin}",
               "RESTATE_ADMIN__DISABLE_WEB_UI": "true", "RESTATE_LOG_FILTER": "warn"}
        server = self._spawn([str(server_binary()), "--no-logo"], workdir / "restate-server.log", env)
        pyenv = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE.parent.parent), os.environ.get("PYTHONPATH")]))}
        service = self._spawn([sys.executable, "-m", "bench.peers.restate_app", str(svc)], workdir / "service.log", pyenv)
        self.http = httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=1000, max_keepalive_connections=1000))
        self.ingress = f"http://127.0.0.1:{ingress}"
        deadline = time.monotonic() + 60
        while True:  # register the service once the admin API answers (and the service listens)
            try:
                r = await self.http.post(f"http://127.0.0.1:{admin}/deployments", json={"uri": f"http://127.0.0.1:{svc}"})
                if r.status_code < 300:
                    break
                why = f"{r.status_code} {r.text[:300]}"
            except httpx.HTTPError as exc:
                why = repr(exc)
            if time.monotonic() > deadline or server.poll() is not None or service.poll() is not None:
                raise RuntimeError(f"restate did not start: {why}\n{(workdir / 'restate-server.log').read_text()[-800:]}")
            await asyncio.sleep(0.2)
        while True:  # the ingress serves the new deployment a moment after registration
            try:
                r = await self.http.post(f"{self.ingress}/Pipeline/run", json="warm up")
                if r.status_code == 200:
                    return
                why = f"{r.status_code} {r.text[:300]}"
            except httpx.HTTPError as exc:
                why = repr(exc)
            if time.monotonic() > deadline:
                raise RuntimeError(f"restate ingress did not serve the pipeline: {why}")
            await asyncio.sleep(0.2)

    async def run(self, topic: str) -> Json:
        r = await self.http.post(f"{self.ingress}/Pipeline/run", json=topic)
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.aclose()
        # The server first (it stops in well under a second); the service holds nothing durable, and the
        # SDK's SIGTERM hook waits for connections the stopped server no longer closes: it is killed.
        server, *services = self.procs
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        for p in services:
            p.kill()
            p.wait()


def driver() -> RestateDriver:
    return RestateDriver()
