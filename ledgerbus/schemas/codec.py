"""Envelope codec: one reusable msgspec encoder/decoder, with size and depth limits checked first.

Limits are checked on the raw bytes before a full parse so a hostile message (a 2 MB string, a
100,000-deep array) costs a length check or one scan, never a deep recursion or a big allocation.
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Any

import msgspec

from ledgerbus.errors import InvalidMessage
from ledgerbus.schemas.codes import ErrorCode
from ledgerbus.schemas.salvage import top_level_strings
from ledgerbus.schemas.tracecontext import check_traceparent
import re as _re

from ledgerbus.schemas.envelope import (ADDRESS_PATTERN, CAPABILITY_PATTERN, TOKEN_PATTERN, Envelope, StoredEnvelope,
                                        ids_valid)
from ledgerbus.schemas.jsonkeys import duplicate_key, has_duplicate_keys

DEFAULT_MAX_BYTES = 512 * 1024  # below NATS's default max_payload (1 MiB) so an ERROR about it still fits
DEFAULT_MAX_DEPTH = 32

# A whole JSON string, escapes included (an unterminated one runs to the end, as a parser would read it).
# Written "unrolled" so it stays linear on hostile input (no nested quantifiers to backtrack through).
_string = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.S)
_not_bracket = bytes(b for b in range(256) if b not in b"[]{}")
_step = [0] * 256
for _c in b"[{":
    _step[_c] = 1
for _c in b"]}":
    _step[_c] = -1
_path_re = re.compile(r" - at `(\$[^`]*)`")
_field_re = re.compile(r"(?:missing required|unknown) field `([^`]+)`")


def nesting_depth_exceeds(data: bytes, max_depth: int) -> bool:
    """True when JSON `data` nests arrays/objects deeper than `max_depth` (brackets in strings don't count)."""
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return False
    # Every step runs in C (regex, translate, accumulate, filter): a Python loop per bracket cost ~70 ms
    # on a 500 KB string of brackets, forty times the parse this check protects.
    brackets = _string.sub(b"", data).translate(None, _not_bracket)
    depths = accumulate(map(_step.__getitem__, brackets))
    return next(filter(max_depth.__lt__, depths), None) is not None


def error_path(exc: msgspec.ValidationError) -> str | None:
    text = str(exc)
    m = _path_re.search(text)
    base = m.group(1) if m else None
    # msgspec puts a missing or unknown field's name in the message, not in the path: name it in the path too.
    f = _field_re.search(text)
    if f:
        return f"{base or '$'}.{f.group(1)}"
    return base


def _retypes() -> bool:
    """True when a decoded StoredEnvelope can become an Envelope in place (same layout, as msgspec builds them)."""
    probe: Any = msgspec.json.decode(b'{"id":"a","conversationId":"a","taskId":"a","sender":"a","recipient":"a",'
                                b'"action":"ACK","capability":"a"}', type=StoredEnvelope)
    try:
        probe.__class__ = Envelope
    except TypeError:
        return False
    return type(probe) is Envelope


_FAST = _retypes()  # else every envelope takes msgspec's per-field patterns (slower, same verdicts)


class Codec:
    """Encodes envelopes to JSON bytes and decodes them back, refusing what breaks the limits."""

    def __init__(self, *, max_bytes: int = DEFAULT_MAX_BYTES, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(Envelope)
        self._unchecked = msgspec.json.Decoder(StoredEnvelope)

    def encode(self, envelope: Envelope) -> bytes:
        """JSON bytes of `envelope`; PAYLOAD_TOO_LARGE here, naming the limit, rather than a bare refusal from NATS."""
        if envelope.traceparent is not None:
            check_traceparent(envelope.traceparent)
        data = self._encoder.encode(envelope)
        if len(data) > self.max_bytes:
            raise InvalidMessage(
                f"envelope {envelope.id} encodes to {len(data)} bytes; the limit is {self.max_bytes}"
                " (LEDGERBUS max message size, below the server's max_payload)",
                code=ErrorCode.PAYLOAD_TOO_LARGE.value, path="$.payload",
                details={"size": len(data), "limit": self.max_bytes},
            )
        return data

    def check_limits(self, data: bytes) -> None:
        if len(data) > self.max_bytes:
            raise InvalidMessage(
                f"message is {len(data)} bytes; the limit is {self.max_bytes}",
                code=ErrorCode.PAYLOAD_TOO_LARGE.value,
                details={"size": len(data), "limit": self.max_bytes},
            )
        if nesting_depth_exceeds(data, self.max_depth):
            raise InvalidMessage(
                f"message nests deeper than {self.max_depth} levels",
                code=ErrorCode.PAYLOAD_TOO_DEEP.value,
                details={"limit": self.max_depth},
            )

    def decode(self, data: bytes) -> Envelope:
        """Decode and validate an envelope; raise InvalidMessage naming the field and the rule."""
        self.check_limits(data)
        try:
            env: Envelope | None = self._unchecked.decode(data) if _FAST else None
        except msgspec.MsgspecError:
            env = None  # the full decode below names the field and the rule
        if env is not None and ids_valid(env):
            # The twin has Envelope's fields and layout, so it becomes one in place: a real Envelope
            # (equality, repr) for one regex call instead of msgspec's eight.
            env.__class__ = Envelope
            self._refuse_duplicate_keys(data, env)
            return env if env.traceparent is None else _traced(env)
        try:
            env = self._decoder.decode(data)
        except msgspec.ValidationError as exc:
            # A repeated key is the first thing to say: which of its values failed is the parser's choice.
            self._refuse_duplicate_keys(data, None)
            raise InvalidMessage(f"invalid envelope: {exc}", path=error_path(exc)) from None
        except msgspec.DecodeError as exc:
            raise InvalidMessage(f"malformed JSON: {exc}") from None
        self._refuse_duplicate_keys(data, env)
        return _traced(env)

    def _refuse_duplicate_keys(self, data: bytes, env: Envelope | None) -> None:
        # What this codec's encode sends comes back byte for byte: one encode and a compare, no scan.
        if env is not None and self._encoder.encode(env) == data:
            return
        if not has_duplicate_keys(data):
            return
        found = duplicate_key(data)
        where, key = found if found is not None else ("$", "?")
        raise InvalidMessage(f"duplicate key {key!r} in the JSON object at {where}: parsers disagree on which "
                             "value counts", path=f"{where}.{key}", details={"key": key})


def _traced(env: Envelope) -> Envelope:
    """`env`, once its traceparent (copied into every answer's headers) is found W3C-shaped."""
    check_traceparent(env.traceparent)
    return env


def salvage_ids(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, str]:
    """Best-effort ids from a message that failed to decode, so its ERROR can be addressed and correlated.

    Only values that are valid subject tokens are kept: a broken message must not be able to steer
    where its error goes beyond naming a well-formed address.
    """
    if len(data) > max_bytes:
        return _salvaged(top_level_strings(data, _SALVAGE))
    try:
        obj: Any = msgspec.json.decode(data)
    except (msgspec.DecodeError, RecursionError):
        # Not JSON (NaN, 1e400, a lone surrogate) but its sender may well be readable.
        return _salvaged(top_level_strings(data, _SALVAGE))
    if not isinstance(obj, dict):
        return {}
    return _salvaged(obj)


def _salvaged(obj: dict[str, Any]) -> dict[str, str]:
    """The values of `obj` that are well-formed for their field."""
    out: dict[str, str] = {}
    for key, pattern in _SALVAGE.items():
        value = obj.get(key)
        # The length too: the capability pattern does not bound it, and a salvaged value that breaks
        # the envelope's schema would make the ERROR itself undecodable to every reader.
        if isinstance(value, str) and len(value) <= 128 and pattern.match(value):
            out[key] = value
    return out


_token = _re.compile(TOKEN_PATTERN)
_address = _re.compile(ADDRESS_PATTERN)
_SALVAGE = {
    "id": _token,
    "conversationId": _token,
    "taskId": _token,
    "sender": _address,
    "replyTo": _address,
    "recipient": _address,
    "capability": _re.compile(CAPABILITY_PATTERN),
}
