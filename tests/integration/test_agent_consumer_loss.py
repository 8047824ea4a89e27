"""Consumers come back: an agent whose durable consumer is deleted re-creates it and serves again, and
while it cannot pull its directory entry (and `ledgerbus agents`) says so."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

from ledgerbus.agents.directory import Directory, InstanceInfo
from ledgerbus.agents.runtime import AgentRuntime
from ledgerbus.agents.sdk import Agent
from ledgerbus.bus.connection import Bus
from ledgerbus.bus.requester import Requester
from ledgerbus.bus.streams import LedgerConfig, consumer_name
from ledgerbus.errors import NotFound
from ledgerbus.schemas.capability import CapabilityRegistry


def echo_agent() -> tuple[Agent, CapabilityRegistry]:
    reg = CapabilityRegistry()
    agent = Agent("echo", registry=reg)

    @agent.capability("echo.say", input=dict, output=dict)
    async def say(inp: dict[str, Any]) -> dict[str, Any]:
        return inp

    return agent, reg


async def eventually(check: Any, timeout: float, what: str) -> Any:
    """Call the coroutine function `check` until it returns something truthy; return that."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        got = await check()
        if got:
            return got
        assert loop.time() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def entry(bus: Bus, instance: str) -> InstanceInfo | None:
    found = [i for i in await Directory(bus).instances() if i.instance == instance]
    return found[0] if found else None


async def consumer_exists(bus: Bus) -> bool:
    try:
        await bus.consumer_info(consumer_name("echo"))
    except NotFound:
        return False
    return True


async def ten_answered(client: Requester) -> None:
    answers = await asyncio.gather(*(client.request("echo", "echo.say", {"n": i}, timeout=10) for i in range(10)))
    assert [a.payload for a in answers] == [{"n": i} for i in range(10)]


async def test_a_deleted_consumer_is_re_created_and_a_stuck_instance_says_so(nats_server: Any, bus: Bus) -> None:
    agent, reg = echo_agent()
    rt = AgentRuntime(agent, bus, instance="echo-1", fetch_timeout=0.2, dead_letters=False)
    client = await Requester(bus, "tester", registry=reg).start()
    try:
        await rt.start()
        await ten_answered(client)

        # Deleted with the JetStream API while the agent runs: it makes the consumer again and serves.
        await bus.js.delete_consumer(bus.subjects.stream, consumer_name("echo"))
        await eventually(lambda: consumer_exists(bus), 10, "the consumer to be re-created")
        await ten_answered(client)

        # Gone with its stream, it cannot be re-created: the directory entry says so, and the CLI shows it.
        await bus.js.delete_stream(bus.subjects.stream)

        async def cannot_pull() -> str | None:
            e = await entry(bus, "echo-1")
            return e.pull_error if e is not None else None

        reason = await eventually(cannot_pull, 10, "the directory to say the instance cannot pull")
        assert "cannot pull" in reason and consumer_name("echo") in reason
        listed = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "ledgerbus.cli.main", "agents", "--json", "--history", "0",
                             "--url", nats_server.url, "--prefix", nats_server.prefix],
            capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        (row,) = [r for r in json.loads(listed.stdout) if r["agent"] == "echo"]
        assert "cannot pull" in row["cannotPull"]["echo-1"]

        # Back with the stream: it pulls again, the entry clears, and requests are answered.
        await bus.ensure_ledger(LedgerConfig())

        async def pulling() -> bool:
            e = await entry(bus, "echo-1")
            return e is not None and e.pull_error is None

        await eventually(pulling, 10, "the directory entry to clear")
        await eventually(lambda: consumer_exists(bus), 10, "the consumer to be re-created")
        await ten_answered(client)
    finally:
        await client.stop()
        await rt.stop(drain=False)
