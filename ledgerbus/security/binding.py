"""The one call readers make to bind an envelope's `sender` to its publisher (see securebus.SecureBus)."""

from __future__ import annotations

from typing import Any


def check_sender(bus: Any, env: Any, subject: str, data: bytes, headers: dict[str, str] | None) -> None:
    """Raise InvalidMessage(SPOOFED_SENDER) if a SecureBus finds `sender` unsigned, forged, or signed for
    another subject than the one `data` arrived on; no-op otherwise."""
    check = getattr(bus, "check_sender", None)
    if check is not None:
        check(env, subject, data, headers)
