"""Browser tests of `ledgerbus ui`: Debian's Chromium driven by Playwright, on a ledger a real run writes."""

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
from typing import Any

import pytest

from world import World

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]


class Runs:
    def __init__(self, world: World) -> None:
        self.world = world
        self.done = world.run("test.ok", {"topic": "ok"})
        self.degraded = world.run("test.shaky", {"topic": "shaky"})


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    world = World(tmp_path_factory.mktemp("ui-world"))
    try:
        yield Runs(world)
    finally:
        world.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve_ui(ledger: Path | None, *extra: str, printed: list[str] | None = None) -> Iterator[str]:
    """`ledgerbus ui LEDGER` as a user starts it, in its own process; yields its base URL. The lines it
    prints before its address go to `printed`."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERBUS_")}
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


@pytest.fixture(scope="session")
def ui_url(runs: Runs) -> Iterator[str]:
    """The UI on the file the recorder goes on writing."""
    with serve_ui(runs.world.ledger_path) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Per module, not per session: Playwright's sync API keeps an event loop running in this thread while
    # it is open, and every later test that calls asyncio.run() (tests/unit runs after tests/ui) would fail.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    p = ctx.new_page()
    p.set_default_timeout(5000)
    yield p
    ctx.close()


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: $LEDGERBUS_UI_SCREENSHOTS, or a temporary directory (printed)."""
    where = Path(os.environ.get("LEDGERBUS_UI_SCREENSHOTS") or tmp_path_factory.mktemp("ui-screenshots"))
    where.mkdir(parents=True, exist_ok=True)
    print(f"\nUI screenshots: {where}")
    return where
