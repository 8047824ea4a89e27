"""Routing: which agent type serves a capability.

Order of preference: an explicit route; then agent types that announced the capability in the
directory (live ones first); then the naming convention `<type>.<verb>` → `<type>`. Types whose
breaker refuses are skipped; when none is left the caller uses the capability's fallback.

The directory is read at most once per `refresh` seconds, by one read that every caller shares. A
capability the router already knows is routed from what it knows while a newer read runs, so a
request never waits for the directory on the hot path; a capability it does not know yet waits for
that read (an agent type that started since the last one may serve it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from ledgerbus.bus.directory import Directory
from ledgerbus.aio import cancel_and_wait
from ledgerbus.orchestrator.breaker import BreakerRegistry

log = logging.getLogger("ledgerbus.orchestrator")


class Router:
    def __init__(
        self,
        *,
        routes: Mapping[str, str | list[str]] | None = None,
        directory: Directory | None = None,
        refresh: float = 2.0,
    ) -> None:
        self.routes = {k: [v] if isinstance(v, str) else list(v) for k, v in (routes or {}).items()}
        self.directory = directory
        self.refresh = refresh
        self._known: dict[str, list[str]] = {}  # capability -> agent types, from the directory
        self._live: dict[str, int] = {}  # agent type -> live instances
        self._capacity: dict[str, int] = {}  # agent type -> requests its live instances take at once
        self._fetched = -float("inf")
        self._reading: asyncio.Task[None] | None = None

    async def _update(self, capability: str) -> None:
        if self.directory is None:
            return
        reading = self._reading
        if (reading is None or reading.done()) and time.monotonic() - self._fetched >= self.refresh:
            self._fetched = time.monotonic()
            reading = self._reading = asyncio.create_task(self._read(self.directory))
        if reading is not None and not reading.done() \
                and capability not in self.routes and capability not in self._known:
            # asyncio.wait, not await: a caller cancelled while it waits leaves the shared read running.
            await asyncio.wait((reading,))

    async def _read(self, directory: Directory) -> None:
        try:
            by_type = await directory.live_types()
        except Exception as exc:
            # The directory is advisory: routing by convention still works. Said, so that a capability
            # routed by its name rather than by who announced it can be traced to the cause.
            log.debug("directory read failed (%s): routing from what is known and by name", exc)
            return
        self._live = {t: len(v) for t, v in by_type.items()}
        self._capacity = {t: sum(max(i.concurrency, 1) for i in v) for t, v in by_type.items()}
        for agent, instances in by_type.items():
            for cap in instances[0].capabilities:
                types = self._known.setdefault(cap.name, [])
                if agent not in types:
                    types.append(agent)

    def candidates(self, capability: str) -> list[str]:
        if capability in self.routes:
            return list(self.routes[capability])
        known = self._known.get(capability, [])
        if known:
            # Prefer types with live instances; keep the rest (they may come back) after them.
            return sorted(known, key=lambda t: self._live.get(t, 0) == 0)
        return [capability.split(".", 1)[0]]

    def live_instances(self, agent_type: str) -> int | None:
        return self._live.get(agent_type) if self.directory is not None else None

    def capacity(self, agent_type: str) -> int | None:
        """Requests the type's live instances take at once, as they announced it; None when unknown
        (no directory, or no live instance in it: then nothing holds its requests back)."""
        return self._capacity.get(agent_type) if self.directory is not None else None

    async def route(self, capability: str, breakers: BreakerRegistry) -> tuple[str | None, list[str]]:
        """(agent type to use, or None; types skipped because their breaker is open)."""
        await self._update(capability)
        skipped: list[str] = []
        for agent in self.candidates(capability):
            if breakers.get(agent).allow():
                return agent, skipped
            skipped.append(agent)
        return None, skipped

    async def close(self) -> None:
        """Stop a directory read still running (the orchestrator is stopping)."""
        await cancel_and_wait(self._reading)
