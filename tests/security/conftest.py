"""A secured deployment on a real nats-server: nkey users with role permissions, signed envelopes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sechelp import Secured, secured_deployment

AGENTS = ["alpha", "beta"]


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[Secured]:
    async with secured_deployment(tmp_path, AGENTS) as sec:
        yield sec


@pytest.fixture(autouse=True)
def no_saved_contexts(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """CLI subprocesses must not pick up the developer's selected context or LEDGERBUS_* credentials."""
    from ledgerbus.cli.connopts import ENV

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))
    for var in ENV.values():
        monkeypatch.delenv(var, raising=False)
