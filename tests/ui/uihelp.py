"""What the UI tests share beyond fixtures: the recorded runs and `ledgerbus ui` started as a user starts it.

A module of its own, not conftest.py: test modules import it by a name no other test folder uses.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from world import World

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]


class Runs:
    def __init__(self, world: World) -> None:
        self.world = world
        self.done = world.run("test.ok", {"topic": "ok"})
        self.degraded = world.run("test.shaky", {"topic": "shaky"})
        self.fanin = world.run("test.fanin", {"topic": "fan-in"})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve_ui(ledger: Path | None, *extra: str, printed: list[str] | None = None,
             env: dict[str, str] | None = None) -> Iterator[str]:
    """`ledgerbus ui LEDGER` as a user starts it, in its own process; yields its base URL. The lines it
    prints before its address go to `printed`; `env` is added to its environment (no LEDGERBUS_* else)."""
    port = _free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("LEDGERBUS_")}, **(env or {})}
    where = [str(ledger)] if ledger is not None else []
    proc = subprocess.Popen([sys.executable, "-m", "ledgerbus.cli.main", "ui", *where, "--port", str(port), *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        while line.startswith("actions on"):
            if printed is not None:
                printed.append(line)
            line = proc.stdout.readline()  # printed once the app is built; then wait for the port
        assert re.search(rf"http://127\.0\.0\.1:{port}/", line), (line, proc.stderr.read() if proc.poll() is not None else "")
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "the UI never listened"
                time.sleep(0.05)  # polling for a port to open, not synchronising on an event
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
