"""The asyncio helpers: deadlines on futures without asyncio.timeout, and cancelling a background task."""

from __future__ import annotations

import asyncio

import pytest

from ledgerbus.aio import cancel_and_wait, expire_at, within


class Late(Exception):
    pass


async def test_within_returns_what_the_future_gives() -> None:
    fut = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(fut.set_result, 42)
    assert await within(fut, 5) == 42


async def test_within_fails_a_silent_future_with_the_given_error() -> None:
    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError):
        await within(loop.create_future(), 0.01)
    silent = loop.create_future()
    with pytest.raises(Late):
        await within(silent, 0.01, Late)
    assert isinstance(silent.exception(), Late)  # failed, not cancelled: whoever else awaits it sees why


async def test_expire_at_fails_only_what_is_still_pending() -> None:
    loop = asyncio.get_running_loop()
    done, pending, cancelled = loop.create_future(), loop.create_future(), loop.create_future()
    done.set_result("kept")
    cancelled.cancel()
    fired = loop.create_future()
    expire_at(loop.time(), done, pending, cancelled)
    loop.call_at(loop.time(), fired.set_result, None)  # due at the same time, so it runs after the expiry
    await fired
    assert done.result() == "kept" and cancelled.cancelled()
    assert isinstance(pending.exception(), TimeoutError)


async def test_a_cancelled_expiry_leaves_the_futures_alone() -> None:
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    expire_at(loop.time(), fut).cancel()
    fired = loop.create_future()
    loop.call_at(loop.time(), fired.set_result, None)
    await fired
    assert not fut.done()


async def test_cancel_and_wait_lets_the_task_unwind() -> None:
    started, unwound = asyncio.Event(), asyncio.Event()

    async def forever() -> None:
        try:
            started.set()
            await asyncio.Event().wait()
        finally:
            unwound.set()

    task = asyncio.create_task(forever())
    await started.wait()
    await cancel_and_wait(task)
    assert task.cancelled() and unwound.is_set()
    await cancel_and_wait(None)
