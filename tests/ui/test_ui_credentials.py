"""Issue 21: `ledgerbus ui --url` connects as every server command does: --user/--password, a saved context."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from uihelp import serve_ui

USER, PASSWORD = "alice", "s3cret"


@pytest.fixture
def locked(tmp_path: Path) -> Any:
    """A server that lets in only alice, with one conversation's REQUEST in its ledger."""
    from ledgerbus.bus.connection import Bus
    from ledgerbus.bus.server import EmbeddedServer, ServerConfig
    from ledgerbus.schemas.envelope import new_request

    srv = EmbeddedServer(ServerConfig(data_dir=tmp_path / "nats", sync_interval="2m",
                                      extra=[f"authorization {{ user: {USER}, password: {PASSWORD} }}"])).start()

    async def publish() -> str:
        bus = await Bus.connect(srv.url, name="ui-test", user=USER, password=PASSWORD)
        try:
            req = new_request(sender="tester", recipient="nobody", capability="nobody.work", payload={})
            await bus.publish(req)
            return req.conversation_id
        finally:
            await bus.close()

    with ThreadPoolExecutor(1) as pool:  # a loop of its own: Playwright holds this thread's
        cid = pool.submit(asyncio.run, publish()).result(30)
    yield srv, cid
    srv.stop()


def _ui(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {**{k: v for k, v in os.environ.items() if not k.startswith("LEDGERBUS_")}, **(env or {})}
    return subprocess.run([sys.executable, "-m", "ledgerbus.cli.main", "ui", *args], env=clean,
                          capture_output=True, text=True, timeout=60)


def test_without_credentials_the_refusal_is_one_line_exit_2(locked: Any) -> None:
    srv, _ = locked
    res = _ui("--url", srv.url)
    assert res.returncode == 2 and res.stderr.startswith("error: authorization failed") , res
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    wrong = _ui("--url", srv.url, "--user", USER, "--password", "nope")
    assert wrong.returncode == 2 and f"refused user '{USER}'" in wrong.stderr, wrong


def test_user_and_password_open_the_live_ledger(page: Any, locked: Any) -> None:
    srv, cid = locked
    with serve_ui(None, "--url", srv.url, "--user", USER, "--password", PASSWORD) as url:
        page.goto(url + "/")
        page.wait_for_selector(f'tr[data-id="{cid}"][data-status="RUNNING"]')
    # The same from the variables every command reads.
    with serve_ui(None, "--url", srv.url, env={"LEDGERBUS_USER": USER, "LEDGERBUS_PASSWORD": PASSWORD}) as url:
        page.goto(url + "/")
        page.wait_for_selector(f'tr[data-id="{cid}"]')


def test_a_saved_context_gives_the_server_and_the_credentials(page: Any, locked: Any, tmp_path: Path) -> None:
    srv, cid = locked
    config = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    saved = subprocess.run([sys.executable, "-m", "ledgerbus.cli.main", "context", "save", "locked", "--url", srv.url,
                            "--user", USER, "--password", PASSWORD], env={**os.environ, **config},
                           capture_output=True, text=True, timeout=60)
    assert saved.returncode == 0, saved.stderr
    with serve_ui(None, "--context", "locked", env=config) as url:
        page.goto(url + "/")
        page.wait_for_selector(f'tr[data-id="{cid}"]')
    both = _ui(str(tmp_path / "x.db"), "--context", "locked", env=config)
    assert both.returncode == 1 and "not both" in both.stderr, both
