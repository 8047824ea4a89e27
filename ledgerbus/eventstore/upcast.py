"""Schema evolution while replaying: old payloads are brought up to today's capability versions.

Where the version lives: the capability registry holds each capability's *current* version and its
upcasters (`registry.add_upcaster(name, "input"|"output", from_version, fn)`); a payload records the
version it was written at in a reserved payload key, `"$v"` (absent = 1, so every ledger written
before versioning counts as v1). The envelope wire contract is untouched — `$v` is payload metadata,
ignored by msgspec Structs and pydantic models that do not declare it. A writer at version ≥ 2 stamps
it with `stamp()`.

Upcasting applies to REQUEST payloads (the capability's input) and RESPONSE payloads (its output).
The stored bytes — and so the hash chain — are never changed: replay sees the upcast envelope, the
ledger keeps what was written.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ledgerbus.errors import InvalidMessage
from ledgerbus.eventstore.base import StoredEvent
from ledgerbus.schemas.capability import CapabilityRegistry, registry as default_registry
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import Envelope

VERSION_KEY = "$v"

_KIND = {Action.REQUEST: "input", Action.RESPONSE: "output"}


def version_of(payload: dict[str, Any]) -> int:
    v = payload.get(VERSION_KEY, 1)
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 1 else 1


def stamp(payload: dict[str, Any], version: int) -> dict[str, Any]:
    """The payload marked as written at `version` (v1 stays unmarked, as every existing ledger is)."""
    if version <= 1:
        return payload
    return {**payload, VERSION_KEY: version}


@dataclass
class UpcastProblem:
    position: int
    capability: str
    message: str


@dataclass
class Upcaster:
    """Applies registered upcasters to envelopes as they are replayed; counts what it did."""

    registry: CapabilityRegistry = field(default_factory=lambda: default_registry)
    upcast: int = 0
    problems: list[UpcastProblem] = field(default_factory=list)

    def envelope(self, env: Envelope, position: int = 0) -> Envelope:
        kind = _KIND.get(env.action)
        if kind is None:
            return env
        cap = self.registry.find(env.capability)
        if cap is None:
            return env
        recorded = version_of(env.payload)
        if recorded == cap.version:
            return env
        try:
            body = {k: v for k, v in env.payload.items() if k != VERSION_KEY}
            payload = stamp(cap.upcast(kind, body, recorded), cap.version)
        except InvalidMessage as exc:
            self.problems.append(UpcastProblem(position, env.capability, exc.reason))
            return env
        except Exception as exc:  # a buggy upcaster must not stop a replay: report it with the event
            self.problems.append(UpcastProblem(position, env.capability, f"upcaster failed: {type(exc).__name__}: {exc}"))
            return env
        self.upcast += 1
        return msgspec.structs.replace(env, payload=payload)

    def events(self, events: Iterable[StoredEvent]) -> Iterator[StoredEvent]:
        for ev in events:
            env = self.envelope(ev.envelope, ev.position)
            yield ev if env is ev.envelope else StoredEvent(ev.position, env, ev.raw, ev.stored_at)
