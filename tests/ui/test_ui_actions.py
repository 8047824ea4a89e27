"""Issue 21: actions are off by default, and with --actions refused without the token printed at start-up."""

from __future__ import annotations

import json
import re
from typing import Any

from uihelp import Runs, serve_ui


def test_actions_are_off_unless_asked_for(page: Any, ui_url: str, runs: Runs) -> None:
    cid = runs.done.conversation_id
    page.goto(f"{ui_url}/conversations/{cid}")
    assert page.locator("form.actions").count() == 0
    assert page.request.post(f"{ui_url}/conversations/{cid}/export").status == 404


def test_export_is_refused_without_the_token_and_matches_the_cli_with_it(page: Any, runs: Runs) -> None:
    cid = runs.degraded.conversation_id
    printed: list[str] = []
    with serve_ui(runs.world.ledger_path, "--actions", printed=printed) as url:
        [line] = printed
        token = re.search(r"token: (\S+)", line).group(1)
        assert page.request.post(f"{url}/conversations/{cid}/export").status == 403
        assert page.request.post(f"{url}/conversations/{cid}/export", headers={"x-ledgerbus-token": token + "x"}).status == 403
        page.goto(f"{url}/conversations/{cid}")
        page.fill('form.actions input[name="token"]', "wrong")
        page.click("form.actions button")
        assert "refused" in page.inner_text("body")
        page.goto(f"{url}/conversations/{cid}")
        page.fill('form.actions input[name="token"]', token)
        with page.expect_download() as dl:
            page.click("form.actions button")
        lines = [json.loads(x) for x in open(dl.value.path(), "rb").read().splitlines() if x.strip()]
    ids = {ln["envelope"]["id"] for ln in lines if isinstance(ln.get("envelope"), dict)}
    assert ids == {e.id for e in runs.world.store.envelopes(cid)}
