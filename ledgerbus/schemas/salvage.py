"""Top-level string fields read from the raw bytes of a message that cannot be decoded.

A message too large for the codec, or one that is not valid JSON (NaN, 1e400, a lone surrogate),
still names its sender and ids near its start (encoders write them before the payload). This reads
only the first `HEAD` bytes, in one regex pass over strings and brackets, so its cost is bounded
whatever the message holds.
"""

from __future__ import annotations

import re
from collections.abc import Collection

HEAD = 4096

# A whole JSON string (escapes included) or one bracket; written without nested quantifiers, so linear.
_token = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.S)
# What follows a key: the colon and a plain string value (no escapes: an id never needs one).
_value = re.compile(rb'\s*:\s*"([^"\\]{1,128})"')


def top_level_strings(data: bytes, keys: Collection[str], *, head: int = HEAD) -> dict[str, str]:
    """The string values of `keys` in the outermost JSON object within the first `head` bytes of `data`
    (the first occurrence of each); keys inside nested objects or arrays are not read."""
    window = data[:head]
    wanted = {k.encode(): k for k in keys}
    out: dict[str, str] = {}
    depth = 0
    for m in _token.finditer(window):
        tok = m.group()
        first = tok[0]
        if first in b"[{":
            depth += 1
        elif first in b"]}":
            depth -= 1
        elif depth == 1:
            name = wanted.get(tok[1:-1])
            if name is not None and name not in out:
                v = _value.match(window, m.end())
                if v is not None:
                    try:
                        out[name] = v.group(1).decode("utf-8")
                    except UnicodeDecodeError:
                        pass
                    if len(out) == len(wanted):
                        break
    return out
