"""Requester.request against a real nats-server, the answering side played by hand on the bus."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from ledgerbus.bus.connection import Bus
from ledgerbus.bus.requester import Requester
from ledgerbus.errors import RemoteError, TaskTimeout
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import Envelope, ErrorInfo, answer


async def _requests(bus: Bus, agent: str) -> tuple[Any, asyncio.Queue[Envelope]]:
    """The REQUESTs published to `agent`, heard on core NATS (no agent runtime involved)."""
    got: asyncio.Queue[Envelope] = asyncio.Queue()

    async def on(msg: Any) -> None:
        got.put_nowait(bus.codec.decode(msg.data))

    sub = await bus.nc.subscribe(f"{bus.subjects.prefix}.{agent}.REQUEST.>", cb=on)
    await bus.nc.flush()
    return sub, got


async def test_only_the_final_answer_to_this_attempt_settles_a_request(bus: Bus) -> None:
    sub, got = await _requests(bus, "hand")
    req = await Requester(bus, "asker").start()
    call = asyncio.create_task(req.request("hand", "hand.do", {"x": 1}, timeout=10, attempt=2))
    r = await asyncio.wait_for(got.get(), 5)
    seen = req.watch(r.task_id)  # every answer, in the order the requester's callback takes them
    other = msgspec.structs.replace(r, attempt=1)  # an earlier attempt's late answers
    await bus.publish(answer(other, Action.RESPONSE, payload={"from": "attempt 1"}))
    await bus.publish(answer(other, Action.ERROR, error=ErrorInfo(code="X", message="attempt 1 failed")))
    await bus.publish(answer(r, Action.ACK))
    await bus.publish(answer(r, Action.PROGRESS, payload={"done": 0.5}))
    for _ in range(4):
        await asyncio.wait_for(seen.get(), 5)
    assert not call.done()
    await bus.publish(answer(r, Action.RESPONSE, payload={"from": "attempt 2"}))
    resp = await asyncio.wait_for(call, 5)
    assert resp.payload == {"from": "attempt 2"} and resp.attempt == 2
    req.unwatch(r.task_id, seen)
    assert req._watchers == {}
    await req.stop()
    await sub.unsubscribe()


async def test_an_error_answer_raises_and_silence_times_out(bus: Bus) -> None:
    sub, got = await _requests(bus, "hand")
    req = await Requester(bus, "asker").start()
    call = asyncio.create_task(req.request("hand", "hand.do", {}, timeout=10))
    r = await asyncio.wait_for(got.get(), 5)
    await bus.publish(answer(r, Action.ERROR, error=ErrorInfo(code="NOPE", message="refused", retryable=True)))
    with pytest.raises(RemoteError) as info:
        await asyncio.wait_for(call, 5)
    assert (info.value.code, info.value.retryable) == ("NOPE", True)

    with pytest.raises(TaskTimeout, match="no answer to hand.do from hand within 0.3s"):
        await req.request("hand", "hand.do", {}, timeout=0.3)
    assert req._watchers == {}
    await req.stop()
    await sub.unsubscribe()
