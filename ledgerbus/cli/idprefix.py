"""Conversation ids by prefix, like git's short hashes: what `tail` shows can be typed back as `-c`.

A UUIDv7's first 13 characters are its millisecond; conversations begun in one millisecond share them,
so `tail` shows 18 (the millisecond and the 12-bit sequence after it) and more when two ids it has shown
would otherwise look alike. `-c PREFIX` of at least MIN characters names the one conversation of the
ledger that starts with it; an ambiguous prefix is an error that lists the candidates.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ledgerbus.errors import ConfigError
from ledgerbus.eventstore.base import EventSource

#: the shortest prefix `-c` resolves; anything shorter is taken as a whole id
MIN = 6
#: how much of an id `tail` shows at least
SHOWN = 18
#: candidates listed in an ambiguity error
LISTED = 5


def pick(given: str, candidates: Iterable[str]) -> str:
    """The conversation `given` names among `candidates` (ids starting with it): itself when it is a
    whole id, the only candidate, or `given` unchanged when there is none (the caller says it has no events)."""
    found = sorted(set(candidates))
    if given in found or len(given) < MIN or not found:
        return given
    if len(found) == 1:
        return found[0]
    shown = ", ".join(found[:LISTED]) + (f" and {len(found) - LISTED} more" if len(found) > LISTED else "")
    raise ConfigError(f"conversation prefix {given!r} is ambiguous: {shown}")


def pick_all(given: Sequence[str], lookup: Any) -> list[str]:
    """Each of `given` resolved with `lookup(prefix) -> candidate ids`."""
    return [pick(g, lookup(g)) if len(g) >= MIN else g for g in given]


class ShortIds:
    """Display prefixes, unique among the ids shown so far (an earlier line is not rewritten)."""

    def __init__(self, shown: int = SHOWN) -> None:
        self.min = shown
        self.seen: set[str] = set()

    def __call__(self, cid: str) -> str:
        self.seen.add(cid)
        n = min(self.min, len(cid))
        while n < len(cid) and any(o != cid and o.startswith(cid[:n]) for o in self.seen):
            n += 1
        return cid[:n]


def from_store(store: Any, prefix: str, limit: int = LISTED + 1) -> list[str]:
    """Conversation ids in a SQLite ledger that start with `prefix` (compacted ones too)."""
    return list(store.conversations_starting(prefix, limit=limit))


async def resolve(source: EventSource, given: Sequence[str]) -> list[str]:
    """Each of `given` resolved among the conversations of an EventSource (a file or the live stream)."""
    return [pick(g, await source.conversations_starting(g, limit=LISTED + 1)) if len(g) >= MIN else g for g in given]


async def resolve_in_stream(bus: Any, given: Sequence[str]) -> list[str]:
    from ledgerbus.eventstore.jetstream import JetStreamLedger

    return await resolve(JetStreamLedger(bus), given)


def resolve_in_store(store: Any, given: Sequence[str]) -> list[str]:
    return pick_all(given, lambda p: from_store(store, p))
