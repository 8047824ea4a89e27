"""Issue 21: `ledgerbus ui --url` follows the live stream (through the recorder, into a private mirror)."""

from __future__ import annotations

import time
from typing import Any

from uihelp import Runs, serve_ui


def _ui_consumers(runs: Runs) -> list[str]:
    async def go() -> list[str]:
        infos = await runs.world.bus.js.consumers_info(runs.world.bus.subjects.stream)
        return [i.name for i in infos if i.name.startswith("ui-")]

    return runs.world.call(go())


def test_url_mode_shows_the_ledger_and_new_conversations_live(page: Any, runs: Runs) -> None:
    with serve_ui(None, "--url", runs.world.server.url) as url:
        page.goto(url + "/")
        # What was there before the UI started, mirrored from the stream's start.
        page.wait_for_selector(f'tr[data-id="{runs.degraded.conversation_id}"][data-status="DEGRADED"]')
        page.wait_for_selector('body[data-live="open"]')
        before = page.locator("#conv-rows tr").count()
        started = time.monotonic()
        future = runs.world.start_run("test.ok", {"topic": "live over --url"})
        page.wait_for_function(f"document.querySelectorAll('#conv-rows tr').length > {before}", timeout=2000)
        assert time.monotonic() - started < 2.0
        result = future.result(20)
        page.wait_for_selector(f'tr[data-id="{result.conversation_id}"][data-status="DONE"]')
        assert len(_ui_consumers(runs)) == 1
    assert _ui_consumers(runs) == []  # its consumer went with it


def test_url_mode_with_no_server_is_one_line_exit_2(tmp_path: Any) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERBUS_")}
    res = subprocess.run([sys.executable, "-m", "ledgerbus.cli.main", "ui", "--url", "nats://127.0.0.1:1"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and res.stderr.startswith("error:") and "Traceback" not in res.stderr, res


def test_fork_action_reruns_a_conversation_live_and_is_refused_without_the_token(page: Any, runs: Runs) -> None:
    from pathlib import Path

    from ledgerbus.eventstore.base import EventFilter

    cid = runs.done.conversation_id
    first = next(iter(runs.world.store.read(EventFilter(conversation_ids=(cid,))))).position  # its root REQUEST
    plans = str(Path(__file__).with_name("world.py")) + ":Plans"
    printed: list[str] = []
    with serve_ui(None, "--url", runs.world.server.url, "--actions", "--decomposer", plans, printed=printed) as url:
        token = printed[0].split("token: ", 1)[1].strip()
        refused = page.request.post(f"{url}/conversations/{cid}/fork", form={"at": str(first)})
        assert refused.status == 403
        page.goto(f"{url}/conversations/{cid}?at={first}")
        form = page.locator("form.fork")
        form.locator('input[name="token"]').fill(token)
        form.locator('input[name="payload"]').fill('{"topic": "forked from the UI"}')
        form.locator("button").click()
        page.wait_for_url(lambda u: "/conversations/" in u and cid not in u, timeout=20000)
        assert page.locator("#state").get_attribute("data-status") == "DONE"
        fork_id = page.url.rsplit("/", 1)[1]
    # The fork is in the ledger the recorder keeps, with the edited payload; the original is untouched.
    runs.world.call(runs.world.recorder.catch_up())
    root = next(iter(runs.world.store.read(EventFilter(conversation_ids=(fork_id,))))).envelope
    assert root.payload["topic"] == "forked from the UI"
    assert runs.world.store.envelopes(cid)[0].payload["topic"] == "ok"


def test_re_execute_action_runs_a_step_again_beside_the_recorded_one(page: Any, runs: Runs, shots: Any) -> None:
    from pathlib import Path

    cid = runs.done.conversation_id
    plans = str(Path(__file__).with_name("world.py")) + ":Plans"
    printed: list[str] = []
    with serve_ui(None, "--url", runs.world.server.url, "--actions", "--decomposer", plans, printed=printed) as url:
        token = printed[0].split("token: ", 1)[1].strip()
        assert page.request.post(f"{url}/conversations/{cid}/re-execute",
                                 form={"step": f"{cid}_fetch", "max_requests": "1"}).status == 403
        page.goto(f"{url}/conversations/{cid}")
        form = page.locator("form.rerun")
        form.locator('input[name="token"]').fill(token)
        form.locator('select[name="step"]').select_option(label="fetch")
        form.locator('input[name="max_requests"]').fill("1")
        with page.expect_navigation(timeout=20000) as nav:
            form.locator("button").click()
        assert nav.value.status == 200, page.inner_text("main")
        # Back on the conversation (the UI waits for its mirror to hold the re-run), beside the recorded step.
        assert page.locator('article.task[data-task="fetch"]').get_attribute("data-status") == "DONE"
        page.screenshot(path=str(shots / "conversation-actions.png"))
        assert page.locator('article.task[data-task="fetch_rerun1"]').get_attribute("data-status") == "DONE"
