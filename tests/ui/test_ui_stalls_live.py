"""Issue 21: Stalls & dead letters is live: a new stall or dead letter appears without a reload."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from uihelp import serve_ui
from world import dead_letter


@pytest.fixture
def server(tmp_path: Path) -> Any:
    from ledgerbus.bus.server import EmbeddedServer, ServerConfig

    # A server of its own: requests nobody takes, which the shared run must not see.
    srv = EmbeddedServer(ServerConfig(data_dir=tmp_path / "nats", sync_interval="2m")).start()
    yield srv
    srv.stop()


def _unanswered(url: str) -> str:
    """A REQUEST to an agent type with no instance: a conversation left RUNNING (its conversation id)."""
    from ledgerbus.bus.connection import Bus
    from ledgerbus.schemas.envelope import new_request

    async def go() -> str:
        bus = await Bus.connect(url, name="ui-test-stall")
        try:
            req = new_request(sender="tester", recipient="nobody", capability="nobody.work", payload={"n": 1})
            await bus.publish(req)
            return req.conversation_id
        finally:
            await bus.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, go()).result(30)


def test_a_new_stall_and_a_new_dead_letter_appear_without_a_reload(page: Any, server: Any, shots: Path) -> None:
    with serve_ui(None, "--url", server.url) as url:
        page.goto(url + "/stalls")
        page.wait_for_selector('body[data-live="open"]')
        page.wait_for_selector("#no-stalls")
        page.evaluate("window.__same_page = true")  # gone if the page were loaded again
        cid = _unanswered(server.url)
        started = time.monotonic()
        # No event marks a stall: the default receipt window (2 s) passes in silence, and the page shows it.
        stall = page.wait_for_selector(f'#stalls-now tr.stall[data-conversation="{cid}"]', timeout=8000)
        assert time.monotonic() - started < 6 and "NO_RECEIPT" in stall.inner_text() and "nobody" in stall.inner_text()
        _, letter = dead_letter(server.url)
        row = page.wait_for_selector(f'#letters table.letters tr[data-letter="{letter}"]', timeout=5000)
        assert "ghost.work" in row.inner_text()
        assert page.evaluate("window.__same_page") is True
        page.screenshot(path=str(shots / "stalls-live.png"))
