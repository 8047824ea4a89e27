"""Pipelined appends and direct gets on the bus's one reply inbox, against a real nats-server."""

from __future__ import annotations

import asyncio

import nats.errors
import nats.js.errors
import pytest
from nats.js import api

from ledgerbus.bus._nats.appends import PipelinedJetStream
from ledgerbus.bus.connection import Bus


async def _stream(bus: Bus, name: str, **kw: object) -> str:
    await bus.js.add_stream(api.StreamConfig(name=name.upper(), subjects=[f"{name}.>"], storage=api.StorageType.FILE,
                                             **kw))
    return name.upper()


async def test_pipelined_appends_resolve_in_order_and_nothing_stays_pending(bus: Bus) -> None:
    await _stream(bus, "pipe")
    futs = [await bus.js.publish_async(f"pipe.{i % 7}", str(i).encode(), headers={"Nats-Msg-Id": f"m{i}"})
            for i in range(3000)]
    acks = await asyncio.gather(*futs)
    assert [a.seq for a in acks] == list(range(1, 3001))
    assert {a.stream for a in acks} == {"PIPE"}
    assert not any(a.duplicate for a in acks)
    assert bus.js._waiting == {}
    info = await bus.js.stream_info("PIPE")
    assert info.state.messages == 3000


async def test_pending_appends_are_counted_and_can_be_awaited_together(bus: Bus) -> None:
    silent = await bus.nc.subscribe("unacked.x", cb=_ignore)  # a responder that never sends a PubAck
    await bus.nc.flush()
    unanswered = [await bus.js.publish_async("unacked.x", b"x") for _ in range(7)]
    assert bus.js.publish_async_pending() == 7
    for fut in unanswered:
        fut.cancel()
    assert bus.js.publish_async_pending() == 0
    await silent.unsubscribe()

    await _stream(bus, "count")
    futs = [await bus.js.publish_async("count.x", str(i).encode()) for i in range(500)]
    await asyncio.wait_for(bus.js.publish_async_completed(), 10)
    assert bus.js.publish_async_pending() == 0
    assert all(f.done() and not f.exception() for f in futs)


async def test_a_duplicate_is_reported_as_such_and_not_stored_twice(bus: Bus) -> None:
    await _stream(bus, "dup")
    first = await bus.js.publish("dup.x", b"1", headers={"Nats-Msg-Id": "same"})
    again = await bus.js.publish("dup.x", b"2", headers={"Nats-Msg-Id": "same"})
    assert (first.seq, again.seq) == (1, 1)
    assert not first.duplicate and again.duplicate


async def test_no_stream_on_the_subject_is_an_error_not_a_hang(bus: Bus) -> None:
    with pytest.raises(nats.js.errors.NoStreamResponseError):
        await bus.js.publish("nowhere.at.all", b"x", timeout=5)
    fut = await bus.js.publish_async("nowhere.at.all", b"x")
    with pytest.raises(nats.js.errors.NoStreamResponseError):
        await asyncio.wait_for(fut, 5)


async def test_a_refused_append_raises_the_servers_error(bus: Bus) -> None:
    await _stream(bus, "refuse")
    await bus.js.publish("refuse.x", b"1")
    with pytest.raises(nats.js.errors.APIError) as info:
        await bus.js.publish("refuse.x", b"2", headers={"Nats-Expected-Last-Sequence": "99"})
    assert info.value.err_code == 10071  # wrong last sequence
    assert "sequence" in (info.value.description or "")


async def test_an_unanswered_append_times_out_and_its_entry_is_swept(bus: Bus) -> None:
    # A core subscriber on the subject: the server sees a responder, so no 503 comes; nor does a PubAck.
    silent = await bus.nc.subscribe("silent.x", cb=_ignore)
    await bus.nc.flush()
    with pytest.raises(nats.errors.TimeoutError):
        await bus.js.publish("silent.x", b"x", timeout=0.2)
    for _ in range(1100):
        (await bus.js.publish_async("silent.x", b"x")).cancel()  # given up on, as a caller's timeout does
    await bus.js.publish_async("silent.x", b"x")
    assert len(bus.js._waiting) < 200  # the abandoned ones were dropped, not kept forever
    await silent.unsubscribe()


async def _ignore(msg: object) -> None:
    return None


async def test_the_pending_limit_holds_publishers_back_without_losing_any(bus: Bus) -> None:
    await _stream(bus, "limited")
    js = PipelinedJetStream(bus.nc, max_pending=8)
    futs = [await js.publish_async("limited.x", str(i).encode()) for i in range(200)]
    acks = await asyncio.gather(*futs)
    assert sorted(a.seq for a in acks) == list(range(1, 201))

    stalled = PipelinedJetStream(bus.nc, max_pending=2)
    silent = await bus.nc.subscribe("silent.y", cb=_ignore)
    await bus.nc.flush()
    await stalled.publish_async("silent.y", b"1")
    await stalled.publish_async("silent.y", b"2")
    with pytest.raises(nats.js.errors.TooManyStalledMsgsError):
        await stalled.publish_async("silent.y", b"3", wait_stall=0.2)
    await silent.unsubscribe()


async def test_direct_get_last_finds_the_latest_value_or_none(bus: Bus) -> None:
    await _stream(bus, "kvish", allow_direct=True)
    assert await bus.js.direct_get_last("KVISH", "kvish.a") is None
    await bus.js.publish("kvish.a", b"first")
    await bus.js.publish("kvish.b", b"other")
    await bus.js.publish("kvish.a", b"second")
    msg = await bus.js.direct_get_last("KVISH", "kvish.a")
    assert msg is not None and msg.data == b"second"


async def test_concurrent_first_callers_share_one_reply_subscription(nats_server: object) -> None:
    bus = await Bus.connect(nats_server.url, prefix="shared")  # type: ignore[attr-defined]
    try:
        await _stream(bus, "first")
        before = len(bus.nc._subs)
        futs = await asyncio.gather(*(bus.js.publish_async("first.x", b"x") for _ in range(20)))
        await asyncio.gather(*futs)
        assert len(bus.nc._subs) == before + 1
    finally:
        await bus.close()
