"""Helpers shared by the security tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def eventually(pred: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Wait for `pred` to hold (an event we cannot await directly, e.g. an async server -ERR)."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)
