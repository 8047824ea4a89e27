"""The content pipeline on ledgerbus and on the durable systems a user would pick instead.

One module per system, each with the same two parts: `INFO` (what it is, how it is set up, what
durability it runs with, what it needs installed) and `driver()`, which returns a `Driver`. A trial
(bench/peers/trial.py) starts a system afresh in its own process, drives it and reports figures;
bench/peers/section.py runs the trials, systems interleaved. A system whose packages are missing is
reported as skipped with the reason, never replaced by anything else.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

Json = dict[str, Any]


class Driver(Protocol):
    """One system running the content pipeline. Every conversation is its own durable workflow."""

    async def start(self, workdir: Path) -> None:
        """Start the system from nothing in `workdir` (servers as child processes of this one)."""

    async def run(self, topic: str) -> Json:
        """One conversation for `topic`, to its end; its result (the assembled article)."""

    async def stop(self) -> None:
        """Stop everything `start` started."""


@dataclass(frozen=True)
class PeerInfo:
    name: str  # the figure keys' name: peer.<name>.…
    label: str
    setup: str  # how the system is started and the pipeline written on it
    durability: str  # what is on disk before a step counts as done
    packages: tuple[str, ...] = ()  # Python distributions it needs (the `bench-peers` extra)
    peer: bool = True  # False: ledgerbus itself (the figures the targets are about)

    def missing(self) -> str | None:
        """Why this system cannot run here, or None when it can."""
        absent = []
        for p in self.packages:
            try:
                importlib.metadata.version(p)
            except importlib.metadata.PackageNotFoundError:
                absent.append(p)
        if absent:
            return f"not installed: {', '.join(absent)} (pip install -e '.[bench-peers]')"
        extra = getattr(module(self.name), "missing_extra", None)
        return extra() if extra is not None else None

    def versions(self) -> str:
        out = []
        for p in self.packages:
            try:
                out.append(f"{p} {importlib.metadata.version(p)}")
            except importlib.metadata.PackageNotFoundError:
                pass
        extra = getattr(module(self.name), "extra_versions", None)
        if extra is not None:
            out.append(extra())
        return ", ".join(x for x in out if x)


#: In the order of the table; the first is the figure every target compares.
SYSTEMS = ("ledgerbus", "ledgerbus_r3", "langgraph", "dbos", "restate", "temporal")


def module(name: str) -> Any:
    return importlib.import_module(f"bench.peers.{name}")


def info(name: str) -> PeerInfo:
    return module(name).INFO  # type: ignore[no-any-return]


def driver(name: str) -> Driver:
    return module(name).driver()  # type: ignore[no-any-return]
