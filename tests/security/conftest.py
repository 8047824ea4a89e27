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

