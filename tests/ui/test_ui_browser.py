"""Issue 21: what a person sees in `ledgerbus ui`, checked in a real browser on a ledger from a real run."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ledgerbus.eventstore.base import EventFilter
from ledgerbus.eventstore.fold import ConversationStatus

from uihelp import Runs


def _position_of(runs: Runs, cid: str, code: str) -> int:
    evs = runs.world.store.read(EventFilter(conversation_ids=(cid,)))
    return next(ev.position for ev in evs if ev.envelope.error is not None and ev.envelope.error.code == code)


def test_list_shows_each_conversation_with_its_status(page: Any, ui_url: str, runs: Runs, shots: Path) -> None:
    assert runs.done.status is ConversationStatus.DONE and runs.degraded.status is ConversationStatus.DEGRADED
    page.goto(ui_url + "/")
    done = page.locator(f'tr[data-id="{runs.done.conversation_id}"]')
    degraded = page.locator(f'tr[data-id="{runs.degraded.conversation_id}"]')
    assert "DONE" in done.locator(".badge").inner_text()
    assert "DEGRADED" in degraded.locator(".badge").inner_text()
    # Newest first; retries and the stall's code at a glance.
    ids = page.locator("#conv-rows tr").evaluate_all("rows => rows.map(r => r.dataset.id)")
    assert ids.index(runs.degraded.conversation_id) < ids.index(runs.done.conversation_id)
    assert "STALLED" in degraded.inner_text()
    assert degraded.locator("td.num").nth(2).inner_text() == "1"  # one retry
    page.screenshot(path=str(shots / "conversations.png"), full_page=True)


def test_filters_and_id_prefix_search(page: Any, ui_url: str, runs: Runs) -> None:
    page.goto(ui_url + "/?status=DEGRADED")
    page.wait_for_selector(f'tr[data-id="{runs.degraded.conversation_id}"]')
    assert page.locator(f'tr[data-id="{runs.done.conversation_id}"]').count() == 0
    page.goto(ui_url + "/")
    page.fill('input[name="q"]', runs.done.conversation_id[:30])
    page.keyboard.press("Enter")  # the form is keyboard-usable
    page.wait_for_url("**q=*")
    assert page.locator("#conv-rows tr").evaluate_all("rows => rows.map(r => r.dataset.id)") == [runs.done.conversation_id]
    page.goto(ui_url + "/?code=STALLED")
    assert page.locator("#conv-rows tr").evaluate_all("rows => rows.map(r => r.dataset.id)") == [runs.degraded.conversation_id]


def test_degraded_conversation_marks_the_failed_step_and_the_stall(page: Any, ui_url: str, runs: Runs,
                                                                   shots: Path) -> None:
    cid = runs.degraded.conversation_id
    page.goto(f"{ui_url}/conversations/{cid}")
    page.screenshot(path=str(shots / "conversation-degraded-top.png"))  # what a 1280×800 window shows first
    assert page.locator("#state").get_attribute("data-status") == "DEGRADED"
    shaky = page.locator('article.task[data-task="shaky"]')
    assert shaky.get_attribute("data-status") == "FALLBACK"
    assert "attempts: 2" in shaky.inner_text()
    words = shaky.locator("ul.decisions").inner_text()
    assert "declared stalled" in words and "retry scheduled" in words and "fallback used" in words
    assert page.locator('article.task[data-task="fetch"]').get_attribute("data-status") == "DONE"
    stall = page.locator("table.timeline tr.stall", has_text="STALLED")
    assert stall.count() == 1 and stall.locator(".m-stall").count() == 1
    assert int(stall.get_attribute("data-position")) == _position_of(runs, cid, "STALLED")
    # The waterfall is the rebuilt trace: the conversation, and one process span per attempt the agent handled.
    shaky_spans = page.locator("ul.waterfall li.wf-child", has_text="shaky.work")
    assert shaky_spans.count() == 2
    assert "UPSTREAM_DOWN" in shaky_spans.filter(has_text="attempt 2").inner_text()
    assert "DEGRADED" in page.locator("ul.waterfall li.wf-root").inner_text()
    # Payloads and errors are there, pretty-printed, one click away.
    err_row = page.locator("table.timeline tr", has_text="UPSTREAM_DOWN").first
    err_row.locator("summary").click()
    assert '"code": "UPSTREAM_DOWN"' in err_row.locator("pre").inner_text()
    page.screenshot(path=str(shots / "conversation-degraded.png"), full_page=True)


def test_time_travel_shows_the_state_at_a_position_and_a_diff(page: Any, ui_url: str, runs: Runs,
                                                                shots: Path) -> None:
    cid = runs.degraded.conversation_id
    at = _position_of(runs, cid, "STALLED")
    page.goto(f"{ui_url}/conversations/{cid}?at={at}")  # a deep link opens that position
    assert page.locator("#state").get_attribute("data-at") == str(at)
    assert page.locator("#state").get_attribute("data-status") == "RUNNING"
    assert page.locator('article.task[data-task="shaky"]').get_attribute("data-status") == "STALLED"
    page.screenshot(path=str(shots / "conversation-at-stall.png"), full_page=True)
    # The slider, by keyboard: End goes to the last position, where the step has fallen back.
    page.focus("#slider")
    page.keyboard.press("End")
    page.wait_for_function(f"document.querySelector('#state').dataset.at !== '{at}'")
    assert page.locator('article.task[data-task="shaky"]').get_attribute("data-status") == "FALLBACK"
    assert page.locator("#state").get_attribute("data-status") == "DEGRADED"
    last = page.locator("#state").get_attribute("data-at")
    page.goto(f"{ui_url}/conversations/{cid}?at={last}&diff={at}")
    diff = page.locator("table.diff").inner_text()
    assert "status" in diff and "RUNNING" in diff and "DEGRADED" in diff


def test_a_new_conversation_appears_live_within_two_seconds(page: Any, ui_url: str, runs: Runs) -> None:
    page.goto(ui_url + "/")
    page.wait_for_selector('body[data-live="open"]')
    before = page.locator("#conv-rows tr").count()
    started = time.monotonic()
    future = runs.world.start_run("test.ok", {"topic": "live"})
    page.wait_for_function(f"document.querySelectorAll('#conv-rows tr').length > {before}", timeout=2000)
    assert time.monotonic() - started < 2.0
    result = future.result(20)
    row = page.locator(f'tr[data-id="{result.conversation_id}"]')
    assert page.locator("#conv-rows tr").first.get_attribute("data-id") == result.conversation_id
    # Its status changes in place, without a reload.
    page.wait_for_selector(f'tr[data-id="{result.conversation_id}"][data-status="DONE"]')
    assert "DONE" in row.locator(".badge").inner_text()


def test_unknown_conversation_is_a_clear_404(page: Any, ui_url: str) -> None:
    resp = page.goto(ui_url + "/conversations/nope")
    assert resp.status == 404 and "No conversation nope" in page.inner_text("h1")


def test_narrow_window_keeps_the_page_usable(browser: Any, ui_url: str, runs: Runs, shots: Path) -> None:
    ctx = browser.new_context(viewport={"width": 420, "height": 800})
    try:
        page = ctx.new_page()
        page.goto(f"{ui_url}/conversations/{runs.degraded.conversation_id}")
        # Wide tables scroll in their own box; the page itself does not scroll sideways.
        assert page.evaluate("document.documentElement.scrollWidth") <= 420
        assert page.locator('article.task[data-task="shaky"]').is_visible()
        page.screenshot(path=str(shots / "conversation-narrow.png"))
        page.goto(ui_url + "/")
        assert page.evaluate("document.documentElement.scrollWidth") <= 420
    finally:
        ctx.close()


def test_keyboard_only_opens_a_conversation_and_copies_its_id(browser: Any, ui_url: str, runs: Runs) -> None:
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=ui_url)
    try:
        page = ctx.new_page()
        page.goto(f"{ui_url}/?q={runs.done.conversation_id}")
        link = page.locator(f'tr[data-id="{runs.done.conversation_id}"] a')
        for _ in range(40):  # Tab through the page until the conversation's link has the focus
            page.keyboard.press("Tab")
            if link.evaluate("el => el === document.activeElement"):
                break
        page.keyboard.press("Tab")  # its copy button
        page.keyboard.press("Enter")
        assert page.evaluate("navigator.clipboard.readText()") == runs.done.conversation_id
        page.keyboard.press("Shift+Tab")
        page.keyboard.press("Enter")
        page.wait_for_url(f"**/conversations/{runs.done.conversation_id}")
        assert page.locator("#state").get_attribute("data-status") == "DONE"
    finally:
        ctx.close()


def test_time_filters_and_a_bad_time_is_a_clear_400(page: Any, ui_url: str, runs: Runs) -> None:
    late = runs.world.store.read().__next__().envelope.timestamp + 10 * 365 * 86_400_000
    page.goto(f"{ui_url}/?since=@{late}")
    assert page.locator("#conv-rows tr").count() == 0 and page.locator("#empty").is_visible()
    page.goto(f"{ui_url}/?until=@{late}&status=DONE")
    assert runs.done.conversation_id in page.locator("#conv-rows tr").evaluate_all("rows => rows.map(r => r.dataset.id)")
    resp = page.goto(f"{ui_url}/?since=yesterday-ish")
    assert resp.status == 400 and "neither a ledger position" in page.inner_text("main")
