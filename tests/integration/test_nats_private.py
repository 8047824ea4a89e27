"""What ledgerbus's fast paths take from nats-py's private parts behaves, on a real server, as they assume.

pyproject.toml pins the nats-py range these run against. Each private name ledgerbus/bus/_nats/ uses is
exercised here or in test_client.py / test_pulls.py / test_appends.py (PRIVATE below says where), by what
it does, not by its signature: a nats-py release that changed one fails here. LEDGERBUS_NATS_PLAIN=1
runs without any of them (the last test).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import nats
import nats.js.errors
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import api

from ledgerbus.bus._nats import client, compat
from ledgerbus.bus._nats.appends import PipelinedJetStream
from ledgerbus.bus._nats.kv import Bucket
from ledgerbus.bus.connection import Bus
from ledgerbus.errors import NotFound, WrongRevision
from ledgerbus.pytest_plugin import NatsServer

#: Every private nats-py name the fast paths stand on, and the tests that hold it to its behaviour.
PRIVATE: dict[str, str] = {
    "Client._send_publish": "test_client.py::test_the_same_bytes_as_nats_py, test_publish_counts_and_flushes_as_nats_py",
    "Client._parse_header_lines": "test_client.py::test_a_bus_publishes_with_it_and_subscribers_read_the_headers",
    "Client._send_command": "test_publish_counts_and_flushes_as_nats_py",
    "Client._flush_pending": "test_publish_counts_and_flushes_as_nats_py",
    "Client._flush_queue": "test_publish_counts_and_flushes_as_nats_py",
    "nats.aio.client._HEADER_KEY_RE": "test_client.py::test_what_nats_py_refuses_is_refused_the_same_way",
    "PullSubscription._sub": "test_pulls.py::test_a_fetch_returns_every_message_once_in_order_and_keeps_the_books",
    "Subscription._pending_queue": "test_pulls.py::test_a_fetch_returns_every_message_once_in_order_and_keeps_the_books",
    "Subscription._pending_size": "test_pulls.py::test_a_fetch_returns_every_message_once_in_order_and_keeps_the_books",
    "Subscription._conn": "test_pulls.py::test_a_fetch_waiting_when_the_connection_closes_ends",
    "Subscription._pending_next_msgs_calls": "test_pulls.py::test_a_fetch_waiting_when_the_connection_closes_ends",
    "asyncio.Queue._getters / _wakeup_next": "test_pulls.py::test_a_cancelled_wait_leaves_nothing_behind_and_the_next_fetch_works",
    "PullSubscription._nc / _nms / _deliver": "test_pulls.py::test_an_idle_fetch_ends_on_its_own_pull_expiring_and_leaves_none_behind",
    "JetStreamContext._nc / _prefix / _timeout": "test_the_jetstream_contexts_fields_are_its_connection_prefix_and_timeout",
    "KeyValue._name / _stream / _pre / _direct": "test_a_buckets_fields_address_what_nats_py_writes",
    "PullSubscription._consumer": "test_a_pull_names_the_consumer_it_reads_and_deletes_it",
}


def test_every_private_name_is_held_by_a_test_that_exists() -> None:
    here = Path(__file__).parent
    for name, where in PRIVATE.items():
        for ref in where.split(", "):
            module, _, test = ref.rpartition("::")
            text = (here / (module or Path(__file__).name)).read_text()
            assert f"def {test}(" in text, f"{name}: no test {ref}"


def test_the_fast_paths_are_on_for_the_pinned_nats_py() -> None:
    # Else every test of the fast paths would be testing nats-py against itself.
    assert client.FITS and not compat.PLAIN


@pytest.mark.parametrize("value, expected", [("", False), ("0", False), ("no", False), ("1", True), ("yes", True)])
def test_the_switch_is_read_from_the_environment(value: str, expected: bool) -> None:
    assert compat.plain({compat.PLAIN_ENV: value}) is expected


async def test_publish_counts_and_flushes_as_nats_py(nats_server: NatsServer) -> None:
    """The one-pass header path counts a message as nats-py's own does and kicks the flusher: a subscriber
    on another connection gets it without an explicit flush."""
    ours = await client.connect(nats_server.url)
    plain = await nats.connect(nats_server.url)
    try:
        got: asyncio.Queue[object] = asyncio.Queue()

        async def on_msg(msg: object) -> None:
            got.put_nowait(msg)

        await plain.subscribe("private.flush", cb=on_msg)
        await plain.flush()
        for nc in (ours, plain):
            before = dict(nc.stats)
            await nc.publish("private.flush", b"12345", headers={"Lb-Sender": "x"})
            msg = await asyncio.wait_for(got.get(), 5)  # no flush(): the flusher was woken
            assert msg.headers == {"Lb-Sender": "x"}  # type: ignore[attr-defined]
            assert nc.stats["out_msgs"] - before["out_msgs"] == 1
            assert nc.stats["out_bytes"] - before["out_bytes"] == 5
    finally:
        await ours.close()
        await plain.close()


async def test_the_jetstream_contexts_fields_are_its_connection_prefix_and_timeout(nats_server: NatsServer) -> None:
    nc = await client.connect(nats_server.url)
    try:
        js = PipelinedJetStream(nc, timeout=0.4)
        plain = nc.jetstream(timeout=0.4)
        assert js._nc is nc and js._prefix == plain._prefix == "$JS.API"  # what direct gets are sent under
        await js.add_stream(api.StreamConfig(name="PRIVATE_JS", subjects=["privatejs.>"], allow_direct=True))
        await js.publish("privatejs.a", b"v")
        got = await js.direct_get_last("PRIVATE_JS", "privatejs.a")
        assert got is not None and got.data == (await plain.get_last_msg("PRIVATE_JS", "privatejs.a")).data
        # An append nobody answers waits the context's own timeout, as nats-py's does.
        await nc.subscribe("privsilent.x", cb=_ignore)  # answers nothing (and no stream holds it)
        loop = asyncio.get_running_loop()
        for ctx in (js, plain):
            t0 = loop.time()
            with pytest.raises(TimeoutError):
                await ctx.publish("privsilent.x", b"x")
            assert 0.3 < loop.time() - t0 < 3
    finally:
        await nc.close()


async def _ignore(msg: object) -> None:
    pass


async def test_a_buckets_fields_address_what_nats_py_writes(bus: Bus) -> None:
    """The fast paths address the bucket by KeyValue's fields: a value nats-py's own put writes is what the
    direct get reads, and a conditional write through the append pipeline conflicts as kv.update does."""
    bucket = await bus.bucket(bus.subjects.bucket("LB_PRIVATE"), ttl=None, direct=True)
    assert isinstance(bucket, Bucket)
    kv = await bus.js.key_value(bucket.name)  # nats-py's own view of the same bucket
    assert (bucket.name, bucket.stream, bucket.prefix) == (kv._name, kv._stream, kv._pre)
    rev = await kv.put("k", b"one")
    assert await bucket.read("k") == (b"one", rev)  # the direct get, on the bus's reply inbox
    assert await bucket.read("nothing") == (None, 0)
    with pytest.raises(WrongRevision):
        await bucket.write_if("k", b"two", rev + 100)
    new = await bucket.write_if("k", b"two", rev)
    assert (await kv.get("k")).value == b"two" and (await kv.get("k")).revision == new
    with pytest.raises(nats.js.errors.KeyWrongLastSequenceError):
        await kv.update("k", b"three", last=rev)  # nats-py refuses the same stale revision
    await kv.delete("k")
    value, marker = await bucket.read("k")
    assert value is None and marker > new  # the delete marker's revision, to write over it
    assert await bucket.write_if("k", b"again", marker) > marker
    fut = await bucket.put_async("p", b"piped")
    ack = await fut
    entry = await kv.get("p")
    assert entry.value == b"piped" and entry.revision == ack.seq


async def test_a_pull_names_the_consumer_it_reads_and_deletes_it(bus: Bus) -> None:
    from ledgerbus.bus.streams import ConsumerSpec

    pull = await bus.pull(ConsumerSpec(ack="none", filter_subjects=(bus.subjects.all(),), inactive_threshold=30.0))
    assert pull.consumer and (await bus.consumer_info(pull.consumer)).name == pull.consumer
    await pull.close(delete=True)
    with pytest.raises(NotFound):
        await bus.consumer_info(pull.consumer)


_PLAIN_RUN = textwrap.dedent("""
    import asyncio, sys
    from ledgerbus.bus._nats import client, compat
    from ledgerbus.bus._nats.appends import PipelinedJetStream
    from ledgerbus.bus.connection import Bus
    from ledgerbus.bus.requester import Requester
    from ledgerbus.bus.streams import ConsumerSettings
    from ledgerbus.schemas.codes import Action
    from ledgerbus.schemas.envelope import answer, new_request

    async def main() -> None:
        bus = await Bus.connect(sys.argv[1], prefix=sys.argv[2])
        assert compat.PLAIN and not client.FITS and not isinstance(bus.js, PipelinedJetStream)
        sub = await bus.agent_consumer("echo", ConsumerSettings())
        req = Requester(bus, "tester")
        await req.start()
        env = req.build("echo", "echo.say", {"text": "hi"})
        asking = asyncio.create_task(bus.publish(env))
        (msg,) = await sub.fetch(1, timeout=5)
        got = bus.codec.decode(msg.data)
        assert "quicken" not in type(sub).__qualname__ and got.id == env.id
        await bus.publish(answer(got, Action.RESPONSE, sender="echo", payload={"text": "hi"}))
        await msg.ack()
        await asking
        kv = await bus.bucket(bus.subjects.bucket("LB_RESULTS"), ttl=None, direct=True)
        rev = await kv.write_if("a", b"1", 0)
        assert await kv.read("a") == (b"1", rev)
        print((await bus.stream_info()).messages)
        await req.stop()
        await bus.close()

    asyncio.run(main())
""")


def test_the_switch_runs_a_step_on_nats_pys_public_api_alone(nats_server: NatsServer, tmp_path: Path) -> None:
    script = tmp_path / "plain.py"
    script.write_text(_PLAIN_RUN)
    env = {**os.environ, compat.PLAIN_ENV: "1"}
    done = subprocess.run([sys.executable, str(script), nats_server.url, "plainrun"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2"]  # the REQUEST and its RESPONSE, stored
