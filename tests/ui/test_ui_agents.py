"""Issue 21: the Agents page on real runs: live instances from the agent directory, capabilities with their
schemas, load, the breaker rebuilt from the ledger as the orchestrator sees it, recent errors and stalls."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from uihelp import Runs, serve_ui
from world import open_breaker


@pytest.fixture(scope="module")
def broken(runs: Runs) -> Iterator[Any]:
    result, orch, rt = open_breaker(runs.world)
    try:
        yield result, orch
    finally:
        async def stop() -> None:
            await orch.stop()
            await rt.stop(drain=False, timeout=2)

        runs.world.call(stop())


def test_live_agents_show_instances_schemas_and_the_breaker_the_orchestrator_opened(
        page: Any, runs: Runs, broken: Any, shots: Path) -> None:
    result, orch = broken
    assert orch.breakers.states()["broken"].value == "open"  # what the orchestrator holds in memory
    alpha = next(rt for rt in runs.world.runtimes if rt.agent.name == "alpha")
    with serve_ui(None, "--url", runs.world.server.url) as url:
        page.goto(url + "/agents")
        # Rebuilt from the ledger, it says what the orchestrator says: open, a probe due in about 30 s.
        cell = page.locator('table.agents tr[data-agent="broken"] td.breaker')
        assert cell.get_attribute("data-state") == "open", cell.inner_text()
        assert "probe in" in cell.inner_text()
        assert page.locator('table.agents tr[data-agent="alpha"] td.breaker').get_attribute("data-state") == "closed"
        assert page.locator('table.agents tr[data-agent="alpha"] td.instances').inner_text() == "1"
        section = page.locator("section#agent-alpha")
        assert section.locator(f'table.instances tr[data-instance="{alpha.instance}"]').count() == 1
        cap = section.locator('li[data-capability="alpha.work"] details.schema')
        assert "announced by alpha." in cap.inner_text()
        cap.locator("summary").click()
        assert '"type": "object"' in cap.locator("pre").first.inner_text()
        # The failing agent's errors, newest first, each linked to its conversation at that position.
        errors = page.locator("section#agent-broken ul.errors li")
        assert errors.count() == 5 and "HANDLER_ERROR" in errors.first.inner_text()
        errors.first.locator("a").first.click()
        page.wait_for_url(f"**/conversations/{result.conversation_id}?at=*")
        page.go_back()
        # The shaky step's stall, as the orchestrator recorded it.
        assert "STALLED" in page.locator("section#agent-shaky ul.stalls").inner_text()
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(shots / "agents.png"), full_page=False)
        page.screenshot(path=str(shots / "agents-full.png"), full_page=True)


def test_file_agents_say_instances_are_not_known_and_rebuild_the_breaker(page: Any, ui_url: str, broken: Any) -> None:
    page.goto(ui_url + "/agents")
    assert page.locator('table.agents tr[data-agent="alpha"] td.instances').inner_text() == "not known from a file"
    assert "not known from a file" in page.locator("section#agent-alpha").inner_text()
    assert page.locator('table.agents tr[data-agent="broken"] td.breaker').get_attribute("data-state") == "open"
    assert page.locator('table.agents tr[data-agent="shaky"] td.load').inner_text() == "0"  # nothing in flight
