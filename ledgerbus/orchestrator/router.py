"""Routing: which agent type serves a capability.

Order of preference: an explicit route; then agent types that announced the capability in the
directory (live ones first); then the naming convention `<type>.<verb>` → `<type>`. Types whose
breaker refuses are skipped; when none is left the caller uses the capability's fallback.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from ledgerbus.agents.directory import Directory
from ledgerbus.orchestrator.breaker import BreakerRegistry


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
        self._fetched = 0.0

    async def _update(self) -> None:
        if self.directory is None or time.monotonic() - self._fetched < self.refresh:
            return
        self._fetched = time.monotonic()
        try:
            by_type = await self.directory.live_types()
        except Exception:
            return  # the directory is advisory; routing by convention still works
        self._live = {t: len(v) for t, v in by_type.items()}
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

    async def route(self, capability: str, breakers: BreakerRegistry) -> tuple[str | None, list[str]]:
        """(agent type to use, or None; types skipped because their breaker is open)."""
        await self._update()
        skipped: list[str] = []
        for agent in self.candidates(capability):
            if breakers.get(agent).allow():
                return agent, skipped
            skipped.append(agent)
        return None, skipped
