"""nats-py's client, with the header block of a publish built in one pass and header names read once.

nats-py builds a message's headers key by key (a regex on every name, a strip, a translate and two
encodes per header): 3 µs for an envelope's three headers, on each of a step's three appends. Names
are checked once here and values that need no reshaping are joined in one string; anything else
(a value with a line break or surrounding spaces, a name nats-py would refuse) takes nats-py's own
path, so the bytes on the wire are the same either way (`tests/integration/test_client.py`).
"""

from __future__ import annotations

import re
from typing import Any

import nats.aio.client as _nats_client
from nats.aio.client import Client as _NatsClient
from nats.protocol.command import hpub_cmd

from ledgerbus.bus._nats.compat import PLAIN

# nats-py's own rule for a header name (an RFC 9110 token), so both paths refuse the same names.
_NAME: re.Pattern[str] = getattr(_nats_client, "_HEADER_KEY_RE", None) or re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_checked_names: set[str] = set()
_MAX_CHECKED = 64  # ledgerbus sets a handful of names; a caller inventing names does not grow this forever


def header_block(headers: dict[str, Any]) -> bytes | None:
    """The NATS/1.0 header block for `headers`, or None when nats-py would reshape a name or a value."""
    parts = ["NATS/1.0\r\n"]
    for name, value in headers.items():
        if name not in _checked_names:
            if type(name) is not str or not _NAME.fullmatch(name):
                return None
            if len(_checked_names) < _MAX_CHECKED:
                _checked_names.add(name)
        if type(value) is not str:
            return None
        value = value.strip()
        if "\r" in value or "\n" in value:
            return None
        parts.append(f"{name}: {value}\r\n")
    parts.append("\r\n")
    return "".join(parts).encode()


_names: dict[bytes, str | None] = {}  # a header line's raw name -> the name nats-py makes of it (None: skipped)


def _name(raw: bytes) -> str | None:
    """nats-py's reading of a header name: stripped, ASCII, no whitespace inside (else the line is skipped)."""
    try:
        name = raw.strip().decode("ascii")
    except UnicodeDecodeError:
        return None
    return None if any(c.isspace() for c in name) else name


def parse_header_lines(raw: bytes) -> dict[str, str]:
    """nats-py's `_parse_header_lines`, with each distinct name read once rather than on every message."""
    out: dict[str, str] = {}
    names = _names
    for line in raw.split(b"\r\n"):
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        try:
            key = names[name]
        except KeyError:
            key = _name(name)
            if len(names) < _MAX_CHECKED:
                names[name] = key
        if key is not None:
            out[key] = value.strip().decode("utf-8", "replace")
    return out


class Client(_NatsClient):
    # Every message with headers goes through this: an envelope's three cost 3 µs to read in nats-py.
    _parse_header_lines = staticmethod(parse_header_lines)

    async def _send_publish(self, subject: str, reply: str, payload: bytes, payload_size: int,
                            headers: dict[str, Any] | None) -> None:
        hdr = header_block(headers) if headers and subject else None
        if hdr is None:
            await super()._send_publish(subject, reply, payload, payload_size, headers)
            return
        # The rest as nats-py's own _send_publish does it: count, queue, kick the flusher.
        self.stats["out_msgs"] += 1
        self.stats["out_bytes"] += payload_size
        await self._send_command(hpub_cmd(subject, reply, hdr, payload))
        if self._flush_queue is not None and self._flush_queue.empty():
            await self._flush_pending()


def _fits(nats_client: type[_NatsClient]) -> bool:
    """True when nats-py still has the private methods and fields the overrides above stand on. What they
    do is held to nats-py's own behaviour by tests on a real server, for the range pyproject pins
    (tests/integration/test_client.py, test_nats_private.py), not by comparing parameter names."""
    try:
        plain = nats_client()
    except Exception:
        return False
    return (callable(getattr(nats_client, "_send_publish", None))
            and callable(getattr(nats_client, "_parse_header_lines", None))
            and callable(getattr(plain, "_send_command", None)) and callable(getattr(plain, "_flush_pending", None))
            and isinstance(getattr(plain, "stats", None), dict) and hasattr(plain, "_flush_queue"))


#: A nats-py that changed them, or LEDGERBUS_NATS_PLAIN, gets nats-py's own client (slower, never wrong).
FITS = not PLAIN and _fits(_NatsClient)


async def connect(servers: str | list[str], **options: Any) -> _NatsClient:
    """As `nats.connect`, with ledgerbus's client where the installed nats-py fits it."""
    nc = Client() if FITS else _NatsClient()
    await nc.connect(servers, **options)
    return nc


def reconnect_forever(nc: Any) -> None:
    """Once connected, reconnect without giving up (the first connect is bounded by its attempts)."""
    nc.options["max_reconnect_attempts"] = -1
