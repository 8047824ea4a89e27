"""One conductor per conversation: a claim in a JetStream KV bucket, held under a lease.

The bucket `LB_CONDUCTORS` (`LB_CONDUCTORS_<PREFIX>` under another subject prefix) has one key per
conversation id. Its value says which orchestrator instance holds it, how long its lease is, and
whether it is conducting, released or finished.

- **claim**: a KV create — atomic, so of two orchestrators claiming one conversation one wins.
- **renew**: while conducting, the holder updates the claim with its last revision every lease/3. A
  renewal refused because the revision moved means another took it over: the holder stops at once. A
  holder that could not renew for a whole lease stops as well, before anyone may take it over.
- **take over**: an observer that saw the same revision for a whole lease, on its own clock (time is
  the observer's, never the holder's), updates it with that revision; only one observer can.
- **finish**: once the final answer is in the ledger. A later delivery of the root REQUEST acks and skips.
- **release**: stopped without finishing (cancelled, failed): anyone may take it at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import msgspec
from ledgerbus.bus.connection import Bucket, Bus
from ledgerbus.errors import ConductorLost, ConfigError, WrongRevision
from ledgerbus.ids import uuid7

log = logging.getLogger("ledgerbus.orchestrator")

BUCKET = "LB_CONDUCTORS"
DEFAULT_LEASE = 10.0

CONDUCTING, RELEASED, FINISHED = "conducting", "released", "finished"


class Claim(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    holder: str  # the orchestrator instance (name, host, pid, a random suffix)
    orchestrator: str  # its name
    lease: float  # seconds within which the holder renews, or stops conducting
    state: str = CONDUCTING


_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(Claim)


@dataclass
class Held:
    """A claim this orchestrator holds. `fresh`: created by it (no one held it before)."""

    conversation_id: str
    revision: int
    fresh: bool


@dataclass
class LeaseWatch:
    """An observer's view of someone else's claim: expired once one revision stayed unchanged for a lease."""

    revision: int = 0
    since: float = 0.0

    def observe(self, revision: int, now: float) -> bool:
        """Note the revision seen at `now`; True when it moved since the last look (its holder is alive)."""
        moved = self.revision != 0 and revision != self.revision
        if revision != self.revision:
            self.revision, self.since = revision, now
        return moved

    def expired(self, lease: float, now: float) -> bool:
        return self.revision != 0 and now - self.since >= lease


def holder_id(name: str) -> str:
    return f"{name}-{socket.gethostname()}-{os.getpid()}-{uuid7()[-6:]}"


class Conductors:
    """The claims of one orchestrator instance."""

    def __init__(self, bus: Bus, orchestrator: str, *, lease: float = DEFAULT_LEASE, holder: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if lease <= 0:
            raise ConfigError(f"the conductor lease must be positive, not {lease}")
        self.bus = bus
        self.orchestrator = orchestrator
        self.lease = lease
        self.holder = holder or holder_id(orchestrator)
        self.clock = clock
        self._kv: Bucket | None = None

    async def bucket(self) -> Bucket:
        if self._kv is None:
            # Without rollup headers, like every ledgerbus bucket: no writer can purge others' claims.
            self._kv = await self.bus.bucket(self.bus.subjects.bucket(BUCKET), ttl=None, direct=True)
        return self._kv

    def _value(self, state: str = CONDUCTING) -> bytes:
        return _enc.encode(Claim(holder=self.holder, orchestrator=self.orchestrator, lease=self.lease, state=state))

    async def _entry(self, cid: str) -> tuple[int, Claim] | None:
        kv = await self.bucket()
        entry = await kv.get(cid)
        if entry is None:
            return None
        try:
            return entry.revision, _dec.decode(entry.value or b"")
        except msgspec.DecodeError:  # not ours to read: treat as a dead holder's, taken over after a lease
            return entry.revision, Claim(holder="?", orchestrator="?", lease=self.lease)

    async def _create(self, cid: str) -> Held | None:
        kv = await self.bucket()
        try:
            return Held(cid, await kv.create(cid, self._value()), fresh=True)
        except WrongRevision:
            return None

    async def _take(self, cid: str, revision: int) -> Held | None:
        kv = await self.bucket()
        try:
            return Held(cid, await kv.update(cid, self._value(), last=revision), fresh=False)
        except WrongRevision:
            return None  # someone else moved first

    async def claim_new(self, cid: str) -> Held:
        """Claim a conversation that is about to start here (its root REQUEST is not published yet)."""
        held = await self._create(cid)
        if held is not None:
            return held
        found = await self._entry(cid)
        who = found[1] if found else None
        if who is not None and who.state == FINISHED:
            raise ConfigError(f"conversation {cid} has already been conducted to its end; start a new one")
        raise ConfigError(f"conversation {cid} is already claimed by {who.holder if who else 'another orchestrator'}")

    async def acquire(self, cid: str, *, patient: bool) -> Held | None:
        """Claim `cid`, or take it over from a holder silent for its whole lease; None if it has finished.

        `patient`: wait while a live holder conducts it (until it finishes, or falls silent). Otherwise
        give up (None) as soon as the holder is seen renewing: someone alive conducts it.
        """
        watch = LeaseWatch()
        while True:
            held = await self._create(cid)
            if held is not None:
                return held
            found = await self._entry(cid)
            if found is None:
                continue  # removed between the two reads: create again
            revision, claim = found
            if claim.state == FINISHED:
                return None
            now = self.clock()
            moved = watch.observe(revision, now)
            if claim.state == RELEASED or watch.expired(claim.lease, now):
                held = await self._take(cid, revision)
                if held is not None:
                    if claim.state != RELEASED:
                        log.warning("took conversation %s over from %s, silent for its %.1fs lease",
                                    cid, claim.holder, claim.lease)
                    return held
                continue
            if moved and not patient:
                return None
            await asyncio.sleep(min(claim.lease, self.lease) / 4)

    async def keep(self, held: Held) -> NoReturn:
        """Renew `held` every lease/3 until cancelled; raise ConductorLost when it is lost."""
        last_ok = self.clock()
        while True:
            await asyncio.sleep(self.lease / 3)
            sent = self.clock()
            try:
                held.revision = await self._renew(held)
                last_ok = sent  # the lease runs from the send, which is before anyone could see the write
            except ConductorLost:
                raise
            except Exception as exc:
                if self.clock() - last_ok >= self.lease:
                    raise ConductorLost(f"could not renew the claim on conversation {held.conversation_id} "
                                        f"for {self.lease:.1f}s ({exc or type(exc).__name__}): stopped conducting it") from None
                log.warning("renewing the claim on conversation %s failed (%s); trying again",
                            held.conversation_id, exc or type(exc).__name__)

    async def _renew(self, held: Held, state: str = CONDUCTING) -> int:
        kv = await self.bucket()
        try:
            return int(await kv.update(held.conversation_id, self._value(state), last=held.revision))
        except WrongRevision:
            found = await self._entry(held.conversation_id)
            if found is not None and found[1].holder == self.holder and found[1].state == CONDUCTING:
                # Our own earlier write, whose reply was lost (a timeout that still stored it).
                held.revision = found[0]
                return int(await kv.update(held.conversation_id, self._value(state), last=held.revision))
            who = found[1].holder if found else "no one"
            raise ConductorLost(f"conversation {held.conversation_id} was taken over by {who}: stopped conducting it") from None

    async def finish(self, held: Held) -> None:
        """Mark the conversation finished. Best effort: unmarked, its successor finds the end in the ledger."""
        await self._settle(held, FINISHED)

    async def release(self, held: Held) -> None:
        """Let anyone take the conversation at once (we stopped without finishing it). Best effort too."""
        await self._settle(held, RELEASED)

    async def _settle(self, held: Held, state: str) -> None:
        try:
            held.revision = await self._renew(held, state)
        except Exception as exc:
            log.warning("could not mark conversation %s %s (%s); its claim expires after %.1fs instead",
                        held.conversation_id, state, exc or type(exc).__name__, self.lease)
