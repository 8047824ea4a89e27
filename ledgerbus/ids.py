"""Time-ordered identifiers (UUIDv7, RFC 9562).

Time order keeps SQLite and JetStream indexes append-only and makes ids sort like the ledger.
"""

from __future__ import annotations

import os
import threading
import time

_lock = threading.Lock()
_last_ms = 0
_seq = 0


def uuid7() -> str:
    """A UUIDv7 string; monotonic within a process even when called twice in one millisecond."""
    global _last_ms, _seq
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            # Same (or backwards) millisecond: bump a 12-bit counter so ids stay strictly increasing.
            _seq += 1
            if _seq > 0xFFF:
                _last_ms += 1
                _seq = 0
            ms = _last_ms
        else:
            _last_ms = ms
            _seq = int.from_bytes(os.urandom(2), "big") & 0x3FF
        seq = _seq
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (seq << 64) | (0b10 << 62) | rand
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid7_time_ms(value: str) -> int:
    """The unix-ms timestamp embedded in a UUIDv7 string."""
    return int(value.replace("-", "")[:12], 16)


def now_ms() -> int:
    return time.time_ns() // 1_000_000
