"""Waiting on another handler's claim: its result, or its key once the claim lapses.

A claim is alive while its revision keeps changing (the claimant renews it every lease/3). Whether it
has lapsed is judged on the waiter's own clock — unchanged for a whole lease since the waiter first saw
that revision — never on a timestamp the claimant wrote, so clock skew between hosts cannot make a
live claim look dead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ledgerbus.agents.results import Claim, Entry, Recorded, ResultStore

log = logging.getLogger("ledgerbus.agent")

#: A claim's lease is the claimant's to choose; a waiter never honours more than this (a corrupt entry
#: or a foreign writer must not be able to hold a key for days).
MAX_LEASE = 600.0
_FIRST_POLL, _MAX_POLL = 0.01, 0.25


class LeaseWatch:
    """Pure: the revisions of a claim seen over time, and whether it has gone a whole lease unrenewed."""

    def __init__(self) -> None:
        self.revision = -1
        self.since = 0.0
        self.lease = 0.0

    def observe(self, revision: int, lease: float, now: float) -> bool:
        """Note the claim's current revision at `now`; True when it changed since the last look
        (a renewal, or a new claimant), False the first time and when it stood still."""
        changed = revision != self.revision
        first = self.revision < 0
        if changed:
            self.revision, self.since = revision, now
        self.lease = min(max(lease, 0.0), MAX_LEASE)
        return changed and not first

    def lapsed(self, now: float) -> bool:
        return self.revision >= 0 and now - self.since >= self.lease


OnRenewal = Callable[[Claim], Awaitable[None]]


async def settle(store: ResultStore, key: str, mine: Claim, first: tuple[Entry | None, int], *,
                 on_renewal: OnRenewal, clock: Callable[[], float]) -> tuple[Recorded | None, int]:
    """Wait until `key` holds a result (returned, with its revision) or this runtime holds its claim
    ((None, the claim's revision)): a free key is claimed at once, a lapsed claim taken over.

    Polls with a growing interval (10 ms to 250 ms): a duplicate is rare, and a direct get is a read.
    `on_renewal` is called each time the live claimant renews, so the waiter can say it is still waiting.
    """
    entry, rev = first
    watch = LeaseWatch()
    delay = _FIRST_POLL
    while True:
        if isinstance(entry, Recorded):
            return entry, rev
        if entry is None:
            got = await store.claim(key, mine, last=rev)
            if got is not None:
                return None, got
        else:
            if watch.observe(rev, entry.lease, clock()):
                await on_renewal(entry)
            if watch.lapsed(clock()):
                got = await store.claim(key, mine, last=rev)
                if got is not None:
                    log.warning("%s: took over the claim of %s on %s (no renewal for %.1fs)",
                                mine.instance, entry.instance, key, watch.lease)
                    return None, got
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_POLL)
        entry, rev = await store.read(key)
