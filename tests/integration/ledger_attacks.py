"""Shared by the ledger integrity tests: a ledger recorded from a real nats-server, edited the way an attacker
(or an older release) would, and the `ledgerbus` command run on it as a subprocess."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec

from ledgerbus.agents.runtime import AgentRuntime
from ledgerbus.agents.sdk import Agent
from ledgerbus.bus.requester import Requester
from ledgerbus.eventstore.recorder import Recorder
from ledgerbus.eventstore.sqlite import SQLiteEventStore
from ledgerbus.schemas.capability import CapabilityRegistry
from ledgerbus.schemas.envelope import Envelope

LEDGERBUS = str(Path(sys.executable).with_name("ledgerbus"))


class Name(msgspec.Struct):
    name: str


class Hello(msgspec.Struct):
    text: str


def greeter() -> tuple[Agent, CapabilityRegistry]:
    reg = CapabilityRegistry()
    agent = Agent("greeter", registry=reg)

    @agent.capability("greeter.greet")
    async def greet(n: Name, ctx: Any) -> Hello:
        return Hello(text=f"hello {n.name}")

    return agent, reg


async def record_greetings(bus: Any, store: SQLiteEventStore, names: list[str]) -> list[Envelope]:
    """One conversation per name (REQUEST, ACK, RESPONSE), recorded by the real recorder; their RESPONSEs."""
    agent, reg = greeter()
    async with AgentRuntime(agent, bus, announce=False), Recorder(bus, store) as rec:
        client = await Requester(bus, "tester", registry=reg).start()
        answers = list(await asyncio.gather(*(client.request("greeter", "greeter.greet", {"name": n}, timeout=10)
                                              for n in names)))
        await rec.catch_up(holding=[a.id for a in answers])
    return answers


def ledgerbus(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LEDGERBUS, *map(str, args)], capture_output=True, text=True, timeout=60,
                          env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())})


def edit(path: Path, *statements: tuple[str, tuple[Any, ...]]) -> None:
    """The attacker's edit, with the stdlib sqlite3 module (as the sqlite3 shell would do it)."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            for sql, args in statements:
                conn.execute(sql, args)
    finally:
        conn.close()


def rows(path: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()
