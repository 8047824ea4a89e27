"""Issue 21: the plan graph draws the dependencies the orchestrator recorded (fan-in), and on a ledger
written before they were recorded goes on reading the stages off the timing."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from ledgerbus.orchestrator.plannote import note_id
from uihelp import Runs, serve_ui


def _edges(page: Any) -> set[tuple[str, str]]:
    return {tuple(x) for x in page.locator("svg.edges path[data-from]").evaluate_all(
        "ps => ps.map(p => [p.dataset.from, p.dataset.to])")}


def _column(page: Any, step: str) -> int:
    return int(page.locator(f'article.task[data-task="{step}"]').evaluate(
        "el => [...el.parentElement.parentElement.children].filter(c => c.classList.contains('col')).indexOf(el.parentElement)"))


def test_fan_in_is_drawn_from_the_recorded_plan(page: Any, ui_url: str, runs: Runs, shots: Path) -> None:
    cid = runs.fanin.conversation_id
    page.goto(f"{ui_url}/conversations/{cid}")
    page.wait_for_selector("svg.edges path[data-from]")
    assert _edges(page) == {("left", "join"), ("right", "join")}  # two arrows into one step
    assert _column(page, "left") == _column(page, "right") == 0 and _column(page, "join") == 1
    assert page.locator('article.task[data-task="join"] .after').inner_text() == "after left, right"
    assert "recorded" in page.inner_text("#plan-hint")
    page.screenshot(path=str(shots / "conversation-fanin.png"))
    # A chain is a chain: the degraded run's one edge, into the step that fell back.
    page.goto(f"{ui_url}/conversations/{runs.degraded.conversation_id}")
    page.wait_for_selector("svg.edges path[data-from]")
    assert _edges(page) == {("fetch", "shaky")}


def test_before_a_step_is_asked_it_shows_as_pending_in_its_place(page: Any, ui_url: str, runs: Runs) -> None:
    cid = runs.fanin.conversation_id
    positions = [ev.position for ev in runs.world.store.read() if ev.envelope.conversation_id == cid]
    note = next(ev.position for ev in runs.world.store.read() if ev.envelope.id == note_id(
        runs.world.store.envelopes(cid)[0].id))
    page.goto(f"{ui_url}/conversations/{cid}?at={note}")  # planned, nothing asked yet
    for step in ("left", "right", "join"):
        assert page.locator(f'article.task[data-task="{step}"]').get_attribute("data-status") == "PENDING"
    assert _edges(page) == {("left", "join"), ("right", "join")}
    assert positions.index(note) == 2  # root REQUEST, its ACK, then the plan


def test_a_ledger_without_the_recorded_plan_still_gets_inferred_stages(page: Any, runs: Runs, tmp_path: Path) -> None:
    cid = runs.fanin.conversation_id
    old = tmp_path / "old.db"
    src = sqlite3.connect(f"file:{runs.world.ledger_path}?mode=ro", uri=True)
    dst = sqlite3.connect(old)
    src.backup(dst)
    src.close()
    with dst:  # as a ledger written before the plan was recorded
        dst.execute("DELETE FROM events WHERE action = 'PROGRESS' AND sender = 'orchestrator'")
    dst.close()
    with serve_ui(old) as url:
        page.goto(f"{url}/conversations/{cid}")
        assert page.locator("#state").get_attribute("data-status") == "DONE"
        assert "timing" in page.inner_text("#plan-hint") and page.locator("svg.edges").count() == 0
        assert page.locator("article.task[data-deps]").count() == 0
        assert page.locator('article.task[data-task="join"]').get_attribute("data-status") == "DONE"


def test_on_a_narrow_window_the_stages_stack_and_the_arrows_follow(browser: Any, ui_url: str, runs: Runs,
                                                                   shots: Path) -> None:
    ctx = browser.new_context(viewport={"width": 420, "height": 800})
    try:
        page = ctx.new_page()
        page.goto(f"{ui_url}/conversations/{runs.fanin.conversation_id}")
        page.wait_for_selector("svg.edges path[data-from]", state="attached")
        assert page.evaluate("document.documentElement.scrollWidth") <= 420
        join = page.locator('article.task[data-task="join"]').bounding_box()
        left = page.locator('article.task[data-task="left"]').bounding_box()
        assert join["y"] > left["y"] + left["height"]  # below, not beside
        assert _edges(page) == {("left", "join"), ("right", "join")}
        page.locator("section", has=page.locator("#plan-hint")).screenshot(path=str(shots / "plan-narrow.png"))
    finally:
        ctx.close()
