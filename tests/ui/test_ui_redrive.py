"""Issue 21: re-drive a dead letter from the Stalls & dead letters page, as `ledgerbus deadletters redrive` does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from uihelp import serve_ui
from world import dead_letter


@pytest.fixture
def server(tmp_path: Path) -> Any:
    from ledgerbus.bus.server import EmbeddedServer, ServerConfig

    # A server of its own: the re-driven request stays unanswered, which the shared run must not see.
    srv = EmbeddedServer(ServerConfig(data_dir=tmp_path / "nats", sync_interval="2m")).start()
    yield srv
    srv.stop()


def test_redrive_is_refused_without_the_token_and_resends_the_request_with_it(page: Any, server: Any,
                                                                               shots: Path) -> None:
    cid, letter = dead_letter(server.url)
    printed: list[str] = []
    with serve_ui(None, "--url", server.url, "--actions", printed=printed) as url:
        token = printed[0].split("token: ", 1)[1].strip()
        assert page.request.post(f"{url}/deadletters/{letter}/redrive").status == 403
        assert page.request.post(f"{url}/deadletters/{letter}/redrive", form={"token": token + "x"}).status == 403
        page.goto(url + "/stalls")
        row = page.locator(f'table.letters tr[data-letter="{letter}"]')
        assert "ghost.work" in row.inner_text() and "2" in row.locator("td.num").nth(1).inner_text()  # deliveries
        page.screenshot(path=str(shots / "deadletters.png"), full_page=True)
        row.locator('input[name="token"]').fill(token)
        with page.expect_navigation(timeout=20000) as nav:
            row.locator("form.redrive button").click()
        assert nav.value.status == 200, page.inner_text("main")
        # On the letter's conversation: the request again, as the next attempt, after the DEAD_LETTER.
        assert page.url.endswith(f"/conversations/{cid}")
        last = page.locator("table.timeline tbody tr").last
        assert "REQUEST" in last.inner_text() and last.locator("td.num").nth(3).inner_text() == "2"
        page.goto(url + "/stalls")
        done = page.locator(f'table.letters tr[data-letter="{letter}"] td.redriven')
        assert "re-driven as" in done.inner_text() and done.locator("form").count() == 0
        # Nobody takes the request again: past the default receipt window it is stalled now, on the same page.
        for _ in range(40):
            if page.locator("table.stalls-now tr.stall", has_text="NO_RECEIPT").count():
                break
            page.wait_for_timeout(250)  # the page is not live: look again until the verdict is due (2 s)
            page.reload()
        assert "ghost" in page.locator("table.stalls-now tr.stall").inner_text()
        # Once is all: a second re-drive is refused with the reason.
        again = page.request.post(f"{url}/deadletters/{letter}/redrive", form={"token": token})
        assert again.status == 400 and "already redriven" in again.text()


def test_redrive_is_not_offered_without_actions(page: Any, server: Any) -> None:
    _, letter = dead_letter(server.url)
    with serve_ui(None, "--url", server.url) as url:
        page.goto(url + "/stalls")
        row = page.locator(f'table.letters tr[data-letter="{letter}"]')
        assert row.locator("form").count() == 0 and f"ledgerbus deadletters redrive {letter}" in row.inner_text()
        assert page.request.post(f"{url}/deadletters/{letter}/redrive").status == 404
