"""Agents killed at every point of handling a request (a real subprocess, os._exit).

Each task's effect happens once, answers come back after restarts, redelivery waits out the consumer's
BackOff, and a request that kills every instance is dead-lettered after MaxDeliver, listed and re-driven
with the `ledgerbus deadletters` command.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import Envelope, new_request

from faulthelp import kill9, spawn

POINTS = ["none", "before_ack", "in_handler", "after_handler", "after_result", "before_jsack"]
BACKOFF = (0.5, 1.5)


class Answers:
    def __init__(self, bus) -> None:
        self.bus = bus
        self.by_task: dict[str, list[Envelope]] = {}

    async def start(self) -> "Answers":
        async def on(msg) -> None:
            env = self.bus.codec.decode(msg.data)
            self.by_task.setdefault(env.task_id, []).append(env)

        await self.bus.subscribe_inbox("tester", on)
        return self

    def final(self, task: str) -> list[Envelope]:
        return [e for e in self.by_task.get(task, []) if e.action in (Action.RESPONSE, Action.ERROR)]


async def run_until(cond, url: str, prefix: str, db: Path, tmp: Path, timeout: float) -> int:
    """Keep one runner alive (restart it whenever it dies) until `cond()`; returns how many times it died."""
    deaths = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, f"not done after {timeout}s and {deaths} runner deaths"
        proc = await spawn("agent_runner.py", "--url", url, "--prefix", prefix, "--db", str(db),
                           "--backoff", ",".join(map(str, BACKOFF)), "--max-deliver", "3", log=tmp / "runner.log")
        waiter = asyncio.ensure_future(proc.wait())
        try:
            while not cond() and not waiter.done():
                assert loop.time() < deadline, f"not done after {timeout}s"
                await asyncio.wait([waiter], timeout=0.05)
        finally:
            if waiter.done():
                deaths += 1
            else:
                await kill9(proc)
                waiter.cancel()
    return deaths


def rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db, timeout=10) as c:
        return c.execute(sql).fetchall()


@pytest.mark.slow
async def test_agent_killed_at_every_point_effects_once_and_dead_letters(nats_server, bus, tmp_path):
    answers = await Answers(bus).start()
    db = tmp_path / "effects.db"
    poison_flag = tmp_path / "poison"
    poison_flag.write_text("x")
    reqs = {p: new_request(sender="tester", recipient="worker", capability="work.do", payload={"n": i, "kill": p})
            for i, p in enumerate(POINTS)}
    poison = new_request(sender="tester", recipient="worker", capability="work.do",
                         payload={"n": 99, "kill": "always", "poison": str(poison_flag)})
    # Start the consumer before publishing: it delivers only new messages.
    await run_until(lambda: db.with_suffix(".db.ready").exists(), nats_server.url, nats_server.prefix, db, tmp_path, 20)
    for r in [*reqs.values(), poison]:
        await bus.publish(r)

    def settled() -> bool:
        return all(answers.final(r.task_id) for r in [*reqs.values(), poison])

    deaths = await run_until(settled, nats_server.url, nats_server.prefix, db, tmp_path, 60)
    assert deaths >= len(POINTS) - 1 + 3, "every kill point (and every poison delivery) should have killed the runner"

    for point, r in reqs.items():
        finals = answers.final(r.task_id)
        assert {e.action for e in finals} == {Action.RESPONSE}, (point, finals)
        assert all(e.payload == {"n": r.payload["n"] * 2} for e in finals)
        keyed = rows(db, f"select count(*) from effects where task='{r.task_id}'")[0][0]
        raw = rows(db, f"select count(*) from effects_raw where task='{r.task_id}'")[0][0]
        runs = rows(db, f"select count(*) from executions where task='{r.task_id}'")[0][0]
        assert keyed == 1, (point, keyed)
        # Only a death between the handler's return and the recorded result re-runs a handler that finished.
        assert raw == (2 if point == "after_handler" else 1), (point, raw)
        assert runs == (2 if point in ("in_handler", "after_handler") else 1), (point, runs)

    # The poison request: delivered MaxDeliver=3 times, each after the BackOff, then dead-lettered.
    (letter,) = answers.final(poison.task_id)
    assert letter.action is Action.ERROR and letter.error.code == "DEAD_LETTER"
    assert "delivered 3 times" in letter.error.message and "redrive" in letter.error.message
    assert letter.causation_id == poison.id and letter.sender == "worker"
    times = [t for (t,) in rows(db, f"select at from deliveries where task='{poison.task_id}' order by at")]
    assert len(times) == 3
    for gap, wait in zip([b - a for a, b in zip(times, times[1:])], BACKOFF):
        assert gap >= wait * 0.9, f"redelivered after {gap:.2f}s, BackOff says {wait}s"

    # `ledgerbus deadletters list` shows it; `redrive` re-sends it as attempt 2, which now succeeds.
    cli = [sys.executable, "-m", "ledgerbus.cli.main"]
    env_url = ["--url", nats_server.url]
    listed = await asyncio.to_thread(subprocess.run, [*cli, "deadletters", "list", "--json", *env_url],
                                     capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert row["id"] == letter.id and row["taskId"] == poison.task_id and row["deliveries"] == 3
    poison_flag.unlink()
    driven = await asyncio.to_thread(subprocess.run, [*cli, "deadletters", "redrive", letter.id, *env_url],
                                     capture_output=True, text=True, timeout=60)
    assert driven.returncode == 0, driven.stderr
    assert f"re-drove {letter.id}" in driven.stdout
    await run_until(lambda: any(e.action is Action.RESPONSE for e in answers.final(poison.task_id)),
                    nats_server.url, nats_server.prefix, db, tmp_path, 30)
    resp = [e for e in answers.final(poison.task_id) if e.action is Action.RESPONSE]
    assert resp[0].attempt == 2 and resp[0].payload == {"n": 198}
    again = await asyncio.to_thread(subprocess.run, [*cli, "deadletters", "list", "--json", *env_url],
                                    capture_output=True, text=True, timeout=60)
    assert json.loads(again.stdout) == []
