"""The envelope's `traceparent`, held to the W3C Trace Context format and size.

Every answer copies its request's `traceparent` into the envelope and into a NATS header. An
unchecked value (75 KB of text, a line break) makes every answer unpublishable, so the codec refuses
it on the way in, as INVALID_MESSAGE naming the field, and on the way out.
"""

from __future__ import annotations

import re

from ledgerbus.errors import InvalidMessage

#: version "00" is exactly 55 characters; a later version may append fields, bounded here.
MAX_TRACEPARENT = 256
_FIELDS = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE, _ZERO_PARENT = "0" * 32, "0" * 16


def traceparent_problem(value: str) -> str | None:
    """Why `value` is not a W3C traceparent, or None when it is one."""
    if len(value) > MAX_TRACEPARENT:
        return f"is {len(value)} characters long; the limit is {MAX_TRACEPARENT}"
    m = _FIELDS.match(value)
    if m is None:
        return "is not version-traceid-parentid-flags in lower-case hex (W3C Trace Context)"
    version, trace_id, parent_id, _ = m.groups()
    if version == "ff":
        return "has the forbidden version ff"
    if version == "00" and len(value) != 55:
        return "has version 00 but is not 55 characters long"
    if len(value) > 55 and value[55] != "-":
        return "has trailing characters that are not a field"
    if trace_id == _ZERO_TRACE or parent_id == _ZERO_PARENT:
        return "has an all-zero trace id or parent id"
    return None


def check_traceparent(value: str | None) -> None:
    """Raise INVALID_MESSAGE (path `$.traceparent`) unless `value` is None or a W3C traceparent."""
    if value is None:
        return
    problem = traceparent_problem(value)
    if problem is not None:
        raise InvalidMessage(f"traceparent {problem}", path="$.traceparent",
                             details={"length": len(value)})
