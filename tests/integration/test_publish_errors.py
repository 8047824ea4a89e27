"""Bus.publish and Bus.publish_async raise ledgerbus errors, never raw nats-py ones, against a real nats-server.

Each error is also the nats-py error it stands for, so code that catches those keeps working.
"""

from __future__ import annotations

import asyncio

import nats.errors
import nats.js.errors
import pytest

from ledgerbus.bus.connection import Bus
from ledgerbus.errors import (ConnectionClosed, LedgerbusError, NoLedgerStream, PublishError, PublishRefused,
                              PublishTimeout, ServerError)
from ledgerbus.schemas.envelope import Envelope, new_request


def _env(**payload: object) -> Envelope:
    return new_request(sender="tester", recipient="sink", capability="sink.put", payload=dict(payload))


async def test_publish_to_a_stopped_server_times_out_as_a_ledgerbus_error(bus: Bus, nats_server) -> None:
    await bus.publish(_env(i=1))
    nats_server.kill()
    with pytest.raises(PublishError) as info:
        await bus.publish(_env(i=2), timeout=0.5)
    # Reconnecting (a timeout), or given up on (closed): either way one of ours, saying the subject.
    assert isinstance(info.value, (PublishTimeout, ConnectionClosed)), repr(info.value)
    assert isinstance(info.value, ServerError) and "sink.REQUEST" in str(info.value)
    if isinstance(info.value, PublishTimeout):
        assert isinstance(info.value, TimeoutError) and not isinstance(info.value, nats.errors.Error)


async def test_publish_with_no_ledger_stream_says_so(bus: Bus) -> None:
    await bus.js.delete_stream(bus.subjects.stream)
    with pytest.raises(NoLedgerStream) as info:
        await bus.publish(_env(i=1))
    assert not isinstance(info.value, nats.errors.Error)  # nats-py's errors stay inside the bus
    assert "no stream stores this subject" in str(info.value)
    fut = await bus.publish_async(_env(i=2))
    with pytest.raises(NoLedgerStream):
        await fut


async def test_an_append_the_stream_refuses_is_publish_refused_with_the_servers_codes(bus: Bus) -> None:
    info = await bus.js.stream_info(bus.subjects.stream)
    info.config.max_msg_size = 256
    await bus.js.update_stream(info.config)
    with pytest.raises(PublishRefused) as refused:
        await bus.publish(_env(text="x" * 1000))
    assert refused.value.code == 400 and refused.value.err_code is not None
    assert isinstance(refused.value, LedgerbusError) and not isinstance(refused.value, nats.js.errors.APIError)
    fut = await bus.publish_async(_env(text="y" * 1000))
    with pytest.raises(PublishRefused):
        await fut


async def test_publish_on_a_closed_connection_is_connection_closed(bus: Bus) -> None:
    await bus.nc.close()
    with pytest.raises(ConnectionClosed) as info:
        await bus.publish(_env(i=1))
    assert not isinstance(info.value, nats.errors.ConnectionClosedError)
    with pytest.raises(ConnectionClosed):
        await bus.publish_async(_env(i=2))


async def test_a_publish_async_given_up_on_leaves_nothing_pending(bus: Bus) -> None:
    silent = await bus.nc.subscribe("lb.silent.REQUEST.x", cb=_ignore)  # answers nothing, like a dead server
    await bus.js.delete_stream(bus.subjects.stream)  # so the silent subscriber is the only "responder"
    await bus.nc.flush()
    env = new_request(sender="tester", recipient="silent", capability="silent.put", payload={},
                      conversation_id="x")
    fut = await bus.publish_async(env)
    assert bus.js.publish_async_pending() == 1
    fut.cancel()
    await asyncio.sleep(0)  # one loop turn: done callbacks run on the next turn (not a wait for time)
    assert bus.js.publish_async_pending() == 0
    await silent.unsubscribe()


async def _ignore(msg: object) -> None:
    return None
