"""Issue 21: the Agents, Stalls & dead letters and Integrity pages, in a real browser."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from uihelp import Runs, serve_ui
from test_ui_browser import _position_of


def test_agents_page_counts_what_each_agent_was_asked_and_answered(page: Any, ui_url: str, runs: Runs) -> None:
    page.goto(ui_url + "/agents")
    shaky = page.locator('tr[data-agent="shaky"]').locator("td")
    # asked twice (the stall, then the retry), two errors sent: the late TIMED_OUT and UPSTREAM_DOWN
    assert shaky.nth(1).inner_text() == "2" and shaky.nth(4).inner_text() == "2"
    page.locator('tr[data-agent="alpha"] a').click()
    page.wait_for_url("**/?agent=alpha")
    ids = set(page.locator("#conv-rows tr").evaluate_all("rows => rows.map(r => r.dataset.id)"))
    assert {runs.done.conversation_id, runs.degraded.conversation_id} <= ids


def test_stalls_page_lists_the_recorded_stall_by_position(page: Any, ui_url: str, runs: Runs, shots: Path) -> None:
    cid = runs.degraded.conversation_id
    at = _position_of(runs, cid, "STALLED")
    page.goto(ui_url + "/stalls")
    row = page.locator(f'table.verdicts tr[data-position="{at}"]')
    assert "STALLED" in row.inner_text() and "shaky" in row.inner_text()
    page.wait_for_selector("#no-stalls")  # nothing is stalled now: the retry answered
    page.screenshot(path=str(shots / "stalls.png"), full_page=True)
    row.locator("td a").first.click()
    page.wait_for_url(f"**/conversations/{cid}?at={at}")
    assert page.locator('article.task[data-task="shaky"]').get_attribute("data-status") == "STALLED"


def test_integrity_page_reports_an_altered_event_at_its_position(page: Any, ui_url: str, runs: Runs,
                                                                   tmp_path: Path) -> None:
    page.goto(ui_url + "/integrity")
    assert "INTACT" in page.inner_text("#verdict")
    # A copy of the ledger, with one envelope edited behind the store's back.
    copy = tmp_path / "altered.db"
    src = sqlite3.connect(f"file:{runs.world.ledger_path}?mode=ro", uri=True)
    dst = sqlite3.connect(copy)
    src.backup(dst)
    src.close()
    at = _position_of(runs, runs.degraded.conversation_id, "STALLED")
    with dst:
        dst.execute("UPDATE events SET envelope = CAST(replace(CAST(envelope AS TEXT), 'silent', 'SILENT') AS BLOB)"
                    " WHERE position = ?", (at,))
    dst.close()
    with serve_ui(copy) as url:
        page.goto(url + "/integrity")
        assert "FINDINGS" in page.inner_text("#verdict")
        finding = page.locator(f'table.findings tr[data-position="{at}"]')
        assert "ALTERED" in finding.inner_text()


def test_the_trace_is_linked_in_jaeger_only_when_one_is_configured(page: Any, ui_url: str, runs: Runs) -> None:
    cid = runs.done.conversation_id
    trace = cid.replace("-", "")  # the trace id is the conversation id
    page.goto(f"{ui_url}/conversations/{cid}")
    assert page.locator("#jaeger").count() == 0  # nothing configured: no link to nowhere
    ledger = runs.world.ledger_path
    with serve_ui(ledger, env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector.example:4318"}) as url:
        page.goto(f"{url}/conversations/{cid}")
        assert page.locator("#jaeger").get_attribute("href") == f"http://collector.example:16686/trace/{trace}"
    with serve_ui(ledger, "--jaeger-url", "https://jaeger.example/ui/",
                  env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector.example:4318"}) as url:
        page.goto(f"{url}/conversations/{cid}")
        assert page.locator("#jaeger").get_attribute("href") == f"https://jaeger.example/ui/trace/{trace}"
    with serve_ui(ledger, env={"LEDGERBUS_JAEGER_URL": "http://127.0.0.1:16686"}) as url:
        page.goto(f"{url}/conversations/{cid}")
        assert page.locator("#jaeger").get_attribute("href") == f"http://127.0.0.1:16686/trace/{trace}"
