"""asyncio helpers shared by the long-running parts (agent runtime, directory announcer, recorder)."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel a background task and wait until it has unwound (its `finally` blocks have run)."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


def _expire(futs: tuple["asyncio.Future[Any]", ...], exc: type[BaseException]) -> None:
    for fut in futs:
        if not fut.done():
            fut.set_exception(exc())


def expire_at(when: float, *futs: "asyncio.Future[Any]",
              exc: type[BaseException] = TimeoutError) -> asyncio.TimerHandle:
    """A timer that fails whichever of `futs` is still pending at loop time `when` with `exc()`.

    For awaiting futures on the hot path: `asyncio.timeout` looks up the task, cancels it and
    uncancels it, 3.3 µs around an await; one timer is 1.1 µs. Cancel the handle once done.
    """
    return asyncio.get_running_loop().call_at(when, _expire, futs, exc)


async def within(fut: "asyncio.Future[Any]", timeout: float, exc: type[BaseException] = TimeoutError) -> Any:
    """`await fut`, failing it with `exc()` if it is still pending after `timeout` seconds."""
    timer = expire_at(fut.get_loop().time() + timeout, fut, exc=exc)
    try:
        return await fut
    finally:
        timer.cancel()
