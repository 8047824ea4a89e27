"""Time travel over the fold: the state at any point, what changed between two points, bounded streaming.

All pure. `--until` / `--at` accept a ledger position (`42`) or a time (`2026-11-24T04:15:00Z`,
`@1764000000000` unix ms); a time selects every event whose timestamp is at or before it.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from typing import Any

import msgspec

from ledgerbus.errors import ConfigError
from ledgerbus.eventstore.base import EventFilter, StoredEvent
from ledgerbus.eventstore.fold import ConversationState, apply


class Point(msgspec.Struct, frozen=True):
    """A point in a ledger: a position, or a time in unix ms."""

    position: int | None = None
    time_ms: int | None = None

    def bound(self, flt: EventFilter) -> EventFilter:
        if self.position is not None:
            return msgspec.structs.replace(flt, until=self.position if flt.until is None else min(flt.until, self.position))
        return msgspec.structs.replace(flt, until_ms=self.time_ms)

    def __str__(self) -> str:
        if self.position is not None:
            return f"position {self.position}"
        stamp = _dt.datetime.fromtimestamp((self.time_ms or 0) / 1000, _dt.timezone.utc)
        return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_point(text: str) -> Point:
    """`42` → position 42; `@1764000000000` → unix ms; an ISO-8601 time (UTC unless it says otherwise)."""
    text = text.strip()
    if text.isdigit():
        return Point(position=int(text))
    if text.startswith("@") and text[1:].isdigit():
        return Point(time_ms=int(text[1:]))
    try:
        when = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{text!r} is neither a ledger position (42), unix ms (@1764000000000) "
                          "nor an ISO time (2026-11-24T04:15:00Z)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return Point(time_ms=int(when.timestamp() * 1000))


def state_at(events: Iterable[StoredEvent], conversation_id: str, point: Point | None = None) -> ConversationState:
    """The conversation's state exactly as it was at `point` (inclusive)."""
    state = ConversationState(conversation_id=conversation_id)
    for ev in events:
        if point is not None and point.position is not None and ev.position > point.position:
            break
        if point is not None and point.time_ms is not None and ev.envelope.timestamp > point.time_ms:
            continue
        apply(state, ev.envelope, ev.position, ev.stored_at)
    return state


class Change(msgspec.Struct, frozen=True):
    path: str
    before: Any
    after: Any


def _flat(value: Any, path: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flat(v, f"{path}.{k}" if path else str(k), out)
    elif isinstance(value, list) and value and path.endswith("decisions"):
        for i, v in enumerate(value):
            _flat(v, f"{path}[{i}]", out)
    else:
        out[path] = value


_MISSING = "<absent>"
#: the `before` or `after` of a field that is not there (shown as `<absent>`; null in JSON)
ABSENT = _MISSING


def diff_states(a: ConversationState, b: ConversationState) -> list[Change]:
    """Field-by-field changes from `a` to `b` (tasks keyed by id, so a new task shows as added fields)."""
    fa: dict[str, Any] = {}
    fb: dict[str, Any] = {}
    _flat(msgspec.to_builtins(a), "", fa)
    _flat(msgspec.to_builtins(b), "", fb)
    changes = []
    cid = b.conversation_id or a.conversation_id
    for key in list(fa) + [k for k in fb if k not in fa]:
        before, after = fa.get(key, _MISSING), fb.get(key, _MISSING)
        if before != after:
            # Step names read better than full task ids: tasks.<cid>_write.status → tasks.write.status
            label = key.replace(f"tasks.{cid}_", "tasks.").replace(f"tasks.{cid}.", "tasks.root.") if cid else key
            changes.append(Change(label, before, after))
    return changes


def diff_conversations(a: ConversationState, b: ConversationState) -> list[Change]:
    """Changes between two conversations (a fork and its original): ids are normalized to the step names."""
    return diff_states(_by_step(a), _by_step(b))


def _by_step(st: ConversationState) -> ConversationState:
    prefix = st.conversation_id + "_"
    tasks = {}
    for tid, t in st.tasks.items():
        key = "root" if tid == st.root_task_id else (tid[len(prefix):] if tid.startswith(prefix) else tid)
        tasks[key] = msgspec.structs.replace(t, task_id=key, request_id=None, idempotency_key="",
                                             last_position=0, decisions=[msgspec.structs.replace(d, position=0)
                                                                         for d in t.decisions])
    return msgspec.structs.replace(st, conversation_id="", tasks=tasks, root_task_id="root", last_position=0)
