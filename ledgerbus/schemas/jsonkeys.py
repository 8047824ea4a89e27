"""Duplicate keys in JSON objects, which the codec refuses: parsers disagree on which value counts.

msgspec keeps the last value, but validates every value it meets on the way: `{"sender":"Bad Sender",
"sender":"client"}` decodes into a pattern-free struct and fails a strict one, and a parser elsewhere
(another language's agent) may keep the first. Refusing them makes every reader see the same envelope.

msgspec cannot report a repeated key, so the check counts instead, all in C: outside strings, JSON has
a colon only after a key, and a re-encoding of the decoded document holds each distinct key once and
the same strings (no encoder writes a colon as `\\u003a`, so a raw document without that escape has
exactly the colons its re-encoding has, unless a key was repeated). Only then, or when the escape is
there, is the document walked in Python to name the key.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

_decode = msgspec.json.decode
_encode = msgspec.json.Encoder().encode


class _Object(list):  # type: ignore[type-arg]
    """A JSON object as its (key, value) pairs, repeats kept."""


def has_duplicate_keys(data: bytes) -> bool:
    """True when some JSON object in `data` repeats a key (False when `data` is not JSON at all)."""
    if b"\\u003a" in data or b"\\u003A" in data:
        return duplicate_key(data) is not None
    try:
        tree = _decode(data)
    except msgspec.DecodeError:  # a typed decode can fail on a value before it reaches the broken part
        return False
    return data.count(b":") != _encode(tree).count(b":")


def duplicate_key(data: bytes) -> tuple[str, str] | None:
    """(path of the object, key) of the first repeated key in `data` (valid JSON), or None. Slow: Python."""
    try:
        tree = json.loads(data, object_pairs_hook=_Object)
    except (ValueError, RecursionError):
        return None
    stack: list[tuple[str, Any]] = [("$", tree)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, _Object):
            seen: set[str] = set()
            for key, value in node:
                if key in seen:
                    return path, key
                seen.add(key)
            stack.extend((f"{path}.{k}", v) for k, v in reversed(node) if isinstance(v, list))
        elif isinstance(node, list):
            stack.extend((f"{path}[{i}]", v) for i, v in reversed(list(enumerate(node))) if isinstance(v, list))
    return None
