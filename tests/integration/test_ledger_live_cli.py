"""`ledgerbus fork` and `ledgerbus replay --mode re-execute` against a live server with real agents serving."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
import typer
from ledger_world import record_articles
from typer.testing import CliRunner

from ledgerbus.bus.connection import Bus
from ledgerbus.cli import ledger_cmds, replay as replay_mod
from ledgerbus.eventstore.base import EventFilter
from ledgerbus.eventstore.jetstream import JetStreamLedger
from ledgerbus.eventstore.sqlite import SQLiteEventStore
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import new_request

app = typer.Typer()
app.command()(replay_mod.replay)
app.command()(ledger_cmds.fork)
runner = CliRunner()


class ServingAgents:
    """The three example agents, served from their own thread and event loop while the CLI runs."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url, self.prefix = url, prefix
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._serve(),), daemon=True)
        self._stop: asyncio.Event | None = None

    async def _serve(self) -> None:
        from ledgerbus.examples import AGENTS, register
        from ledgerbus.agents.runtime import AgentRuntime

        register()

        self._stop = asyncio.Event()
        bus = await Bus.connect(self.url, prefix=self.prefix, name="serving-agents")
        runtimes = [AgentRuntime(a, bus) for a in AGENTS]
        await asyncio.gather(*(r.start() for r in runtimes))
        self.ready.set()
        await self._stop.wait()
        await asyncio.gather(*(r.stop() for r in runtimes))
        await bus.close()

    def __enter__(self) -> "ServingAgents":
        self.thread.start()
        assert self.ready.wait(10), "agents did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)  # type: ignore[union-attr]
        self.thread.join(10)


def stream_events(url: str, prefix: str, cid: str) -> list[tuple[int, bytes]]:
    async def read():
        bus = await Bus.connect(url, prefix=prefix)
        try:
            return [(e.position, e.raw) async for e in JetStreamLedger(bus).read(EventFilter(conversation_ids=(cid,)))]
        finally:
            await bus.close()

    return asyncio.run(read())


@pytest.fixture
def ledger_file(nats_server, tmp_path):
    path = tmp_path / "ledger.db"

    async def record():
        bus = await Bus.connect(nats_server.url, prefix=nats_server.prefix)
        store = SQLiteEventStore(path)
        try:
            [res] = await record_articles(bus, store, ["merkle trees"])
            # And a conversation whose orchestrator died before planning: only its root REQUEST exists.
            root = new_request(sender="client", recipient="orchestrator", capability="content.article",
                               payload={"topic": "gossip protocols", "subtopics": 3})
            await bus.publish(root)
            from ledgerbus.eventstore.recorder import Recorder

            async with Recorder(bus, store) as rec:
                await rec.catch_up()
            return res.conversation_id, root.conversation_id
        finally:
            store.close()
            await bus.close()

    done, orphan = asyncio.run(record())
    return path, done, orphan, nats_server


def test_fork_cli_runs_a_new_conversation_and_leaves_the_original(ledger_file):
    path, cid, _, server = ledger_file
    store = SQLiteEventStore(path, readonly=True)
    ack = next(e for e in store.read(EventFilter(conversation_ids=(cid,)))
               if e.envelope.action is Action.ACK and e.envelope.task_id == cid)
    store.close()
    before = stream_events(server.url, server.prefix, cid)
    with ServingAgents(server.url, server.prefix):
        res = runner.invoke(app, ["fork", str(path), cid, "--at", str(ack.position), "--payload",
                                  '{"topic": "hash trees"}', "--url", server.url, "--prefix", server.prefix, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["original"] == cid and out["fork"] != cid and out["status"] == "DONE"
    assert stream_events(server.url, server.prefix, cid) == before
    forked = stream_events(server.url, server.prefix, out["fork"])
    assert b'"topic":"hash trees"' in forked[0][1]
    # Bad input is one line and an exit code, not a traceback.
    bad = runner.invoke(app, ["fork", str(path), cid, "--at", "1", "--payload", "[1]", "--url", server.url])
    assert bad.exit_code == 1 and "JSON object" in bad.output


def test_re_execute_cli_respects_its_budget(ledger_file):
    path, _, orphan, server = ledger_file
    refused = runner.invoke(app, ["replay", str(path), "-c", orphan, "--mode", "re-execute", "--url", server.url])
    assert refused.exit_code == 1 and "--max-requests" in refused.output
    with ServingAgents(server.url, server.prefix):
        res = runner.invoke(app, ["replay", str(path), "-c", orphan, "--mode", "re-execute", "--max-requests", "3",
                                  "--url", server.url, "--prefix", server.prefix, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["sent"] == 3 and out["budget"] == 3 and out["refused"]
    sent = [e for e in stream_events(server.url, server.prefix, orphan) if b'"action":"REQUEST"' in e[1]
            and b'"sender":"orchestrator"' in e[1]]
    assert len(sent) == 3
