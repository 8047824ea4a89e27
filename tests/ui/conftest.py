"""Browser tests of `ledgerbus ui`: Debian's Chromium driven by Playwright, on a ledger a real run writes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from uihelp import ARGS, CHROMIUM, Runs, serve_ui
from world import World

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # One xdist worker runs every UI test: they share one recorded world (session fixtures) and a browser
    # per module, which each worker would otherwise build again.
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.xdist_group("ui"))


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    world = World(tmp_path_factory.mktemp("ui-world"))
    try:
        yield Runs(world)
    finally:
        world.close()


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
