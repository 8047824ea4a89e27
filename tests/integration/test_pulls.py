"""Pull fetches through the bus hand queued messages over directly, and behave as nats-py's otherwise."""

from __future__ import annotations

import asyncio
import json
import time

import nats.errors
import pytest
from nats.js import api

from ledgerbus.bus.connection import Bus


async def _stream_with(bus: Bus, name: str, n: int) -> None:
    await bus.js.add_stream(api.StreamConfig(name=name.upper(), subjects=[f"{name}.>"], storage=api.StorageType.FILE))
    futs = [await bus.js.publish_async(f"{name}.x", str(i).encode()) for i in range(n)]
    await asyncio.gather(*futs)


async def _pull(bus: Bus, name: str) -> object:
    return await bus.js.pull_subscribe(f"{name}.>", durable=f"{name}-reader", stream=name.upper(),
                                       config=api.ConsumerConfig(ack_policy=api.AckPolicy.NONE))


async def test_a_fetch_returns_every_message_once_in_order_and_keeps_the_books(bus: Bus) -> None:
    await _stream_with(bus, "pulled", 2500)
    sub = await _pull(bus, "pulled")
    assert "quicken" in sub._sub.next_msg.__qualname__  # type: ignore[attr-defined]
    got: list[int] = []
    while len(got) < 2500:
        got += [int(m.data) for m in await sub.fetch(1000, timeout=5)]  # type: ignore[attr-defined]
    assert got == list(range(2500))
    # What the subscription counts as pending falls back to nothing: a fast path that skipped the
    # bookkeeping would, batch after batch, end in nats-py's slow-consumer limit.
    assert sub._sub._pending_size == 0  # type: ignore[attr-defined]
    assert sub._sub._pending_queue.qsize() == 0  # type: ignore[attr-defined]


async def test_a_fetch_with_nothing_to_get_still_times_out(bus: Bus) -> None:
    await _stream_with(bus, "emptyish", 0)
    sub = await _pull(bus, "emptyish")
    t0 = time.monotonic()
    with pytest.raises(nats.errors.TimeoutError):
        await sub.fetch(10, timeout=0.3)  # type: ignore[attr-defined]
    assert time.monotonic() - t0 < 3


async def test_a_fetch_waiting_when_the_connection_closes_ends(nats_server: object) -> None:
    bus = await Bus.connect(nats_server.url, prefix="pullclose")  # type: ignore[attr-defined]
    await _stream_with(bus, "closing", 0)
    sub = await _pull(bus, "closing")
    fetch = asyncio.create_task(sub.fetch(10, timeout=30))  # type: ignore[attr-defined]
    async with asyncio.timeout(5):  # until it waits in nats-py's next_msg (nothing is queued)
        while not sub._sub._pending_next_msgs_calls:  # type: ignore[attr-defined]
            await asyncio.sleep(0.01)
    await bus.nc.close()
    with pytest.raises((nats.errors.ConnectionClosedError, asyncio.CancelledError)):
        await asyncio.wait_for(fetch, 5)


async def test_the_stream_sequence_is_read_as_nats_py_reads_it(bus: Bus) -> None:
    from nats.aio.msg import Msg

    from ledgerbus.bus.messages import stream_sequence

    await _stream_with(bus, "seqs", 40)
    sub = await _pull(bus, "seqs")
    msgs = await sub.fetch(40, timeout=5)  # type: ignore[attr-defined]
    assert [stream_sequence(m) for m in msgs] == [m.metadata.sequence.stream for m in msgs] == list(range(1, 41))
    # The ack subject with a domain and an account hash (servers with JetStream domains) takes nats-py's path.
    v2 = Msg(bus.nc, subject="x", reply="$JS.ACK.hub.AcCtHaSh.SEQS.reader.1.77.5.1700000000000000000.0.tok")
    assert stream_sequence(v2) == v2.metadata.sequence.stream == 77


async def _waiting(sub: object) -> None:
    async with asyncio.timeout(5):  # until the fetch waits (nothing is queued)
        while not sub._sub._pending_next_msgs_calls:  # type: ignore[attr-defined]
            await asyncio.sleep(0.01)


async def test_a_waiting_fetch_gets_what_arrives_without_a_task_of_its_own(bus: Bus) -> None:
    await _stream_with(bus, "later", 0)
    sub = await _pull(bus, "later")
    before = len(asyncio.all_tasks())
    fetch = asyncio.create_task(sub.fetch(1, timeout=5))  # type: ignore[attr-defined]
    await _waiting(sub)
    assert len(asyncio.all_tasks()) == before + 1  # the fetch itself; nats-py's wait would add two more
    await bus.js.publish("later.x", b"hello")
    msgs = await asyncio.wait_for(fetch, 5)
    assert [m.data for m in msgs] == [b"hello"]
    inner = sub._sub  # type: ignore[attr-defined]
    assert not inner._pending_next_msgs_calls and not inner._pending_queue._getters and inner._pending_size == 0


async def test_a_cancelled_wait_leaves_nothing_behind_and_the_next_fetch_works(bus: Bus) -> None:
    await _stream_with(bus, "cancelled", 0)
    sub = await _pull(bus, "cancelled")
    fetch = asyncio.create_task(sub.fetch(1, timeout=30))  # type: ignore[attr-defined]
    await _waiting(sub)
    fetch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await fetch
    inner = sub._sub  # type: ignore[attr-defined]
    assert not inner._pending_next_msgs_calls and not inner._pending_queue._getters
    with pytest.raises(nats.errors.TimeoutError):
        await sub.fetch(1, timeout=0.2)  # type: ignore[attr-defined]
    assert not inner._pending_next_msgs_calls and not inner._pending_queue._getters
    await bus.js.publish("cancelled.x", b"after")
    got: list[bytes] = []
    while not got:  # the fetch cancelled above may have left a pull request the server answers first
        got = [m.data for m in await sub.fetch(1, timeout=5)]  # type: ignore[attr-defined]
    assert got == [b"after"]


async def _requests_waiting(bus: Bus, stream: str, consumer: str, n: int) -> None:
    async with asyncio.timeout(5):  # until the server holds n pull requests for the consumer
        while (await bus.js.consumer_info(stream, consumer)).num_waiting != n:
            await asyncio.sleep(0.01)


async def test_a_request_handed_over_by_a_pull_that_outlived_its_fetch_is_not_held_back(bus: Bus) -> None:
    # A pull request left at the server by an earlier fetch (one that gave up before its 408 came, as
    # nats-py's often does after an idle agent's fetch times out) takes the next message before the
    # current fetch's own request does, with no end-of-batch status after it. The fetch that receives
    # it must hand it over at once, not wait out its timeout for a batch that is never coming.
    await _stream_with(bus, "outlived", 0)
    sub = await _pull(bus, "outlived")
    left_over = {"batch": 1, "expires": 20_000_000_000}
    await bus.nc.publish(sub._nms, json.dumps(left_over).encode(), sub._deliver)  # type: ignore[attr-defined]
    await _requests_waiting(bus, "OUTLIVED", "outlived-reader", 1)
    fetch = asyncio.create_task(sub.fetch(16, timeout=10))  # type: ignore[attr-defined]
    await _requests_waiting(bus, "OUTLIVED", "outlived-reader", 2)
    t0 = time.monotonic()
    await bus.js.publish("outlived.x", b"now")
    msgs = await asyncio.wait_for(fetch, 15)
    assert [m.data for m in msgs] == [b"now"]
    assert time.monotonic() - t0 < 2  # before: the whole 10 s fetch timeout


async def test_an_idle_fetch_ends_on_its_own_pull_expiring_and_leaves_none_behind(bus: Bus) -> None:
    await _stream_with(bus, "idlepull", 0)
    sub = await _pull(bus, "idlepull")
    with pytest.raises(nats.errors.TimeoutError):
        await sub.fetch(16, timeout=0.5)  # type: ignore[attr-defined]
    # The server's 408 ended that fetch (it expires before the fetch gives up): nothing is left to
    # answer the next fetch in its place, and no request is left waiting at the server.
    inner = sub._sub  # type: ignore[attr-defined]
    assert inner._pending_queue.qsize() == 0
    assert (await bus.js.consumer_info("IDLEPULL", "idlepull-reader")).num_waiting == 0
