"""The agent directory: a JetStream KV bucket where live instances announce their type and capabilities.

Each instance writes `<type>.<instance>` every `ttl/3` seconds; the bucket's TTL removes an instance
that stopped announcing, so "live" means "heard from within the TTL". Capabilities carry their JSON
Schemas, so a router (or a person with `ledgerbus agents`) can see what each type accepts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

import msgspec

from ledgerbus.aio import cancel_and_wait
from ledgerbus.bus.connection import Bucket, Bus
from ledgerbus.bus.ttl import DEFAULT_TTL
from ledgerbus.ids import now_ms
from ledgerbus.schemas.capability import Capability
from ledgerbus.schemas.directory import CapabilityInfo, InstanceInfo

log = logging.getLogger("ledgerbus.directory")

BUCKET = "LB_AGENTS"



_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(InstanceInfo)


def describe_capabilities(capabilities: Iterable[Capability]) -> list[CapabilityInfo]:
    """Directory entries for capabilities, with their JSON Schemas (an orchestrator announces its own so)."""
    return [
        CapabilityInfo(
            name=cap.name,
            version=cap.version,
            description=cap.description,
            input_schema=cap.input.json_schema(),
            output_schema=cap.output.json_schema(),
        )
        for cap in capabilities
    ]


class Directory:
    def __init__(self, bus: Bus, *, ttl: float = DEFAULT_TTL) -> None:
        self.bus = bus
        self.ttl = ttl
        self._kv: Bucket | None = None

    async def bucket(self) -> Bucket:
        if self._kv is None:
            name = self.bus.subjects.bucket(BUCKET)
            self._kv = await self.bus.bucket(name, ttl=self.ttl, direct=False)
        return self._kv

    async def announce(self, info: InstanceInfo) -> None:
        kv = await self.bucket()
        info.seen_at = now_ms()
        await kv.put(f"{info.agent}.{info.instance}", _enc.encode(info))

    async def withdraw(self, agent: str, instance: str) -> None:
        kv = await self.bucket()
        try:
            # A delete marker, not kv.purge: that is a rollup, which our buckets refuse (see bus/_nats/kv.py).
            await kv.delete(f"{agent}.{instance}")
        except Exception as exc:
            log.debug("withdraw failed: %s", exc)

    async def instances(self) -> list[InstanceInfo]:
        """Live instances: the latest entry per key of the bucket (Bucket.latest)."""
        kv = await self.bucket()
        out: list[InstanceInfo] = []
        for key, data in await kv.latest():
            try:
                out.append(_dec.decode(data))
            except msgspec.DecodeError as exc:
                # One foreign or damaged entry must not hide every live agent from routing.
                log.warning("directory entry %s skipped: %s", key, exc)
        horizon = now_ms() - int(self.ttl * 1000)
        return sorted((i for i in out if i.seen_at >= horizon), key=lambda i: (i.agent, i.instance))

    async def live_types(self) -> dict[str, list[InstanceInfo]]:
        by_type: dict[str, list[InstanceInfo]] = {}
        for inst in await self.instances():
            by_type.setdefault(inst.agent, []).append(inst)
        return by_type


class Announcer:
    """Keeps one instance's directory entry fresh while it runs.

    `stats`, called before each announcement, brings the entry's counters and state up to date.
    """

    def __init__(self, directory: Directory, info: InstanceInfo,
                 stats: Callable[[InstanceInfo], None] | None = None) -> None:
        self.directory = directory
        self.info = info
        self.stats = stats
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def start(self) -> None:
        await self.directory.announce(self.info)
        self._task = asyncio.create_task(self._loop())

    def refresh(self) -> None:
        """Announce now rather than at the next beat (a change readers should learn of at once)."""
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.directory.ttl / 3):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            if self.stats is not None:
                self.stats(self.info)
            try:
                await self.directory.announce(self.info)
            except Exception as exc:  # a reconnect: the next beat will do
                log.debug("announce failed: %s", exc)

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        await self.directory.withdraw(self.info.agent, self.info.instance)
