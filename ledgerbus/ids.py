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
# Random bytes drawn 4 KiB at a time: one getrandom call per ~400 ids rather than two per id (a
# syscall each, measurable on every envelope). A forked child starts a pool of its own (below), so
# parent and child never hand out the same bits.
_POOL = 4096
_pool = b""
_at = 0


def _random(n: int) -> int:
    global _pool, _at  # called with _lock held
    if _at + n > len(_pool):
        _pool, _at = os.urandom(_POOL), 0
    value = int.from_bytes(_pool[_at:_at + n], "big")
    _at += n
    return value


def _forget_pool() -> None:
    global _pool, _at, _lock
    _pool, _at = b"", 0
    _lock = threading.Lock()  # a thread of the parent may have held it at the fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


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
            _seq = _random(2) & 0x3FF
        seq = _seq
        rand = _random(8) & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (seq << 64) | (0b10 << 62) | rand
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid7_time_ms(value: str) -> int:
    """The unix-ms timestamp embedded in a UUIDv7 string."""
    return int(value.replace("-", "")[:12], 16)


def now_ms() -> int:
    return time.time_ns() // 1_000_000
