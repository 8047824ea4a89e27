"""Retention of the JetStream ledger, from the environment or the CLI.

    LEDGERBUS_LEDGER_MAX_AGE=30d      drop messages older than this (0: keep forever)
    LEDGERBUS_LEDGER_MAX_BYTES=10GB   cap the stream's size, oldest dropped first (0: no cap)

When neither is set, connecting leaves an existing stream's retention as it is, so a limit set with
`ledgerbus retention` is not undone by the next process that connects.
"""

from __future__ import annotations

import os
import re
from typing import Any

from ledgerbus.bus.messages import StreamInfo
from ledgerbus.bus.streams import LedgerConfig
from ledgerbus.errors import ConfigError

MAX_AGE_ENV = "LEDGERBUS_LEDGER_MAX_AGE"
MAX_BYTES_ENV = "LEDGERBUS_LEDGER_MAX_BYTES"

_UNITS_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_UNITS_B = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
            "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_number = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_duration(text: str) -> float:
    """`30d`, `12h`, `90m`, `45s` or plain seconds → seconds (0 = forever)."""
    m = _number.match(text)
    if not m or m.group(2).lower() not in _UNITS_S:
        raise ConfigError(f"{text!r} is not a duration: use a number with s, m, h, d or w (e.g. 30d)")
    return float(m.group(1)) * _UNITS_S[m.group(2).lower()]


def parse_bytes(text: str) -> int:
    """`500MB`, `2GiB`, `1048576` → bytes (0 = no cap)."""
    m = _number.match(text)
    if not m or m.group(2).lower() not in _UNITS_B:
        raise ConfigError(f"{text!r} is not a size: use a number with B, KB, MB, GB, TB or KiB, MiB, GiB, TiB")
    return int(float(m.group(1)) * _UNITS_B[m.group(2).lower()])


def ledger_config_from_env(environ: dict[str, str] | None = None) -> LedgerConfig | None:
    """The retention the environment asks for, or None when it asks for nothing."""
    env = os.environ if environ is None else environ
    age, size = env.get(MAX_AGE_ENV), env.get(MAX_BYTES_ENV)
    if not age and not size:
        return None
    try:
        max_age = parse_duration(age) if age else None
        max_bytes = parse_bytes(size) if size else None
    except ConfigError as exc:
        raise ConfigError(f"{MAX_AGE_ENV if age and not _number.match(age or '') else MAX_BYTES_ENV}: {exc}") from None
    return LedgerConfig(max_age=max_age or None, max_bytes=max_bytes or None)


async def apply_retention(bus: Any, *, max_age: float | None = None, max_bytes: int | None = None) -> StreamInfo:
    """Set the ledger stream's max age / size (None leaves a value as it is; 0 removes the limit)."""
    return await bus.set_retention(max_age=max_age, max_bytes=max_bytes)  # type: ignore[no-any-return]


def describe(info: StreamInfo) -> dict[str, Any]:
    """The retention as machine values: seconds and bytes, None for no limit."""
    return {
        "stream": info.name,
        "maxAge": info.max_age,
        "maxBytes": info.max_bytes,
        "messages": info.messages,
        "bytes": info.bytes,
        "firstPosition": info.first_seq,
        "lastPosition": info.last_seq,
    }
