"""ledgerbus's NATS client puts the same bytes on the wire as nats-py's, with its header block built in one pass."""

from __future__ import annotations

import asyncio
from typing import Any

import nats
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client as NatsClient

from ledgerbus.bus._nats import client
from ledgerbus.bus.connection import Bus, envelope_headers
from ledgerbus.pytest_plugin import NatsServer
from ledgerbus.schemas.envelope import new_request

CASES: list[dict[str, Any]] = [
    {"Nats-Msg-Id": "01a20cd2-fdd6-7258-aa09-d19cc716e586", "Lb-Sender": "echo0", "Lb-Task": "t-1"},
    {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "k=v"},
    {"Lb-Sender": "  padded  "},  # nats-py strips values
    {"Lb-Sender": "caf\u00e9 \u2713"},  # UTF-8
    {"Lb-Sender": "a\r\nNats-Msg-Id: forged"},  # nats-py removes the line breaks: no header injection
    {"Lb-Sender": "line\nbreak", "Lb-Task": "ok"},
    {" Padded-Name ": "v"},  # nats-py strips names
    {"": "skipped", "Kept": "v"},  # and skips empty ones
    {},  # an empty block
    {"A": "", "B": " "},
]


async def _wire(nc: Any, headers: dict[str, Any]) -> bytes:
    """The command `nc` queues for one publish with `headers`."""
    sent: list[bytes] = []
    original = nc._send_command

    async def record(cmd: bytes, priority: bool = False) -> None:
        sent.append(cmd)
        await original(cmd, priority)

    nc._send_command = record
    try:
        await nc.publish("wire.test", b"payload", reply="_INBOX.r.1", headers=headers)
    finally:
        del nc._send_command
    assert len(sent) == 1
    return sent[0]


@pytest.fixture
async def pair(nats_server: NatsServer) -> Any:
    ours = await client.connect(nats_server.url)
    plain = await nats.connect(nats_server.url)
    yield ours, plain
    await ours.close()
    await plain.close()


@pytest.mark.parametrize("headers", CASES)
async def test_the_same_bytes_as_nats_py(pair: Any, headers: dict[str, Any]) -> None:
    ours, plain = pair
    assert type(ours) is client.Client and type(plain) is not client.Client
    assert await _wire(ours, headers) == await _wire(plain, headers)


@pytest.mark.parametrize("headers", [{"Bad:Name": "v"}, {"Bad Name": "v"}, {"a(b)": "v"}, {"a/b": "v"}, {"a@b": "v"},
                                     {"\u00e9": "v"}, {"N": 5}])
async def test_what_nats_py_refuses_is_refused_the_same_way(pair: Any, headers: dict[str, Any]) -> None:
    ours, plain = pair
    with pytest.raises(Exception) as theirs:
        await plain.publish("wire.test", b"x", headers=headers)
    with pytest.raises(theirs.type):
        await ours.publish("wire.test", b"x", headers=headers)


def test_an_envelopes_headers_take_the_one_pass_path() -> None:
    env = new_request(sender="client", recipient="research", capability="research.search", payload={})
    headers = envelope_headers(env)
    block = client.header_block(headers)
    assert block is not None
    assert block == ("NATS/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()
    assert client.header_block({"Lb-Sender": "a\nb"}) is None


async def test_a_bus_publishes_with_it_and_subscribers_read_the_headers(bus: Bus) -> None:
    assert isinstance(bus.nc, client.Client)
    got: asyncio.Queue[Any] = asyncio.Queue()
    sub = await bus.nc.subscribe("wire.read", cb=got.put)
    await bus.nc.publish("wire.read", b"x", headers={"Lb-Sender": "  s  ", "Lb-Task": "t"})
    msg = await asyncio.wait_for(got.get(), 5)
    assert msg.headers == {"Lb-Sender": "s", "Lb-Task": "t"} and msg.data == b"x"
    await sub.unsubscribe()


# Header blocks as they arrive: real names, odd names, odd spacing and bytes, lines without a colon.
_parts = st.sampled_from([b"Nats-Msg-Id", b"Lb-Sender", b" Lb-Task ", b"a b", b"caf\xc3\xa9", b"\xff", b"", b"X\x1c",
                          b":", b": ", b"\t", b" v ", b"value", b"\xe2\x9c\x93", b"\xc3", b"\r\n", b"k:v:w"])
header_blocks = st.lists(st.lists(_parts, max_size=5).map(b"".join), max_size=6).map(b"\r\n".join)


@settings(max_examples=400, deadline=None)
@given(header_blocks)
def test_header_lines_are_read_as_nats_py_reads_them(raw: bytes) -> None:
    assert client.parse_header_lines(raw) == NatsClient._parse_header_lines(raw)
    assert client.parse_header_lines(raw) == NatsClient._parse_header_lines(raw)  # the second time from the cache


def test_the_installed_nats_py_fits_and_a_changed_one_is_left_alone() -> None:
    assert client.FITS  # else every test above would be testing nats-py against itself

    # What the overrides stand on is checked for presence; what it does is held to nats-py's behaviour by
    # the tests above and tests/integration/test_nats_private.py, not by comparing parameter names.
    class Without(NatsClient):
        _send_publish = None  # type: ignore[assignment]

    class Unflushed(NatsClient):
        def __init__(self) -> None:
            super().__init__()
            del self._flush_queue

    assert not client._fits(Without)
    assert not client._fits(Unflushed)
