"""What each agent was asked and answered, counted a stretch of positions at a time and kept.

A GROUP BY over the whole events table costs seconds at a million events, on every visit. Counts only
grow as the ledger does, so they are added up once, in position ranges, and each visit adds only the
events recorded since the last one. Pure: the caller reads the rows.
"""

from __future__ import annotations

from collections.abc import Iterable

#: Positions counted per step: a fraction of a second of SQLite work, so a page never waits long for one.
CHUNK = 100_000

AgentRow = tuple[str, int, int, int, int]


class AgentTally:
    def __init__(self) -> None:
        self.upto = 0  # every event at a position up to this one is counted
        self._counts: dict[str, list[int]] = {}

    def add(self, rows: Iterable[tuple[str, str, str, int]], upto: int) -> None:
        """Fold in (sender, recipient, action, count) rows of the positions after `self.upto` up to `upto`."""
        for sender, recipient, action, n in rows:
            if action == "REQUEST":
                self._acc(recipient)[0] += n
            else:
                acc = self._acc(sender)
                slot = {"ACK": 1, "RESPONSE": 2, "ERROR": 3}.get(action)
                if slot is not None:
                    acc[slot] += n
        self.upto = max(self.upto, upto)

    def _acc(self, name: str) -> list[int]:
        acc = self._counts.get(name)
        if acc is None:
            acc = self._counts[name] = [0, 0, 0, 0]
        return acc

    def rows(self) -> list[AgentRow]:
        """Per agent: (name, requests asked of it, acks, responses, errors), by name."""
        return [(n, *v) for n, v in sorted(self._counts.items())]  # type: ignore[misc]
