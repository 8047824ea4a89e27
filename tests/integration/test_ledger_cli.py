"""The ledger commands end to end on real ledgers: replay (file and live), time travel, diff, export/import, verify, retention."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import pytest
import typer
from ledger_world import record_articles
from typer.testing import CliRunner

from ledgerbus.bus.connection import Bus
from ledgerbus.cli import ledger_cmds, replay as replay_mod
from ledgerbus.cli.render import state_json
from ledgerbus.eventstore.base import EventFilter, Rejected
from ledgerbus.eventstore.fold import fold
from ledgerbus.eventstore.sqlite import SQLiteEventStore

# The commands under test, registered as ledgerbus.cli.main registers them.
app = typer.Typer()
app.command()(replay_mod.replay)
app.command()(ledger_cmds.diff)
app.command()(ledger_cmds.export)
app.command(name="import")(ledger_cmds.import_)
app.command()(ledger_cmds.verify)
app.command()(ledger_cmds.retention)
runner = CliRunner()


def cli(*args: str, code: int = 0, env: dict[str, str] | None = None) -> str:
    res = runner.invoke(app, [str(a) for a in args], env=env)
    assert res.exit_code == code, (res.output, res.exception)
    return res.output


@pytest.fixture
def recorded(nats_server, tmp_path):
    """A SQLite ledger of two real conversations, and the live stream they came from."""
    path = tmp_path / "ledger.db"

    async def record():
        bus = await Bus.connect(nats_server.url, prefix=nats_server.prefix)
        store = SQLiteEventStore(path)
        try:
            return await record_articles(bus, store, ["raft consensus", "bloom filters"])
        finally:
            store.close()
            await bus.close()

    results = asyncio.run(record())
    return path, [r.conversation_id for r in results], nats_server


def comparable(state: dict) -> dict:
    return json.loads(json.dumps(state, default=str))


def test_time_travel_at_every_position_matches_a_fold_of_the_prefix(recorded):
    path, (cid, _), _ = recorded
    store = SQLiteEventStore(path, readonly=True)
    events = list(store.read(EventFilter(conversation_ids=(cid,))))
    store.close()
    for i, ev in enumerate(events):
        out = json.loads(cli("replay", path, "-c", cid, "--until", str(ev.position), "--json", "--no-timeline"))
        assert out[0]["state"] == comparable(state_json(fold(events[: i + 1]))), f"at position {ev.position}"
    # A time bound selects by timestamp, the same fold.
    last_ts = events[len(events) // 2].envelope.timestamp
    out = json.loads(cli("replay", path, "-c", cid, "--until", f"@{last_ts}", "--json", "--no-timeline"))
    expected = fold([e for e in events if e.envelope.timestamp <= last_ts])
    assert out[0]["state"] == comparable(state_json(expected))


def test_replay_from_the_live_stream_equals_replay_from_the_file(recorded):
    path, cids, server = recorded
    args = ["-c", cids[0], "-c", cids[1], "--json"]
    from_file = json.loads(cli("replay", path, *args))
    live = json.loads(cli("replay", "--url", server.url, "--prefix", server.prefix, *args))
    assert live == from_file and [c["state"]["status"] for c in live] == ["DONE", "DONE"]
    # Filters: only the writer's events, same either way.
    f = json.loads(cli("replay", path, "-c", cids[0], "--agent", "writing", "--json"))
    l = json.loads(cli("replay", "--url", server.url, "--prefix", server.prefix, "-c", cids[0], "--agent", "writing", "--json"))
    assert f == l and {e["sender"] == "writing" or e["recipient"] == "writing" for e in f[0]["events"]} == {True}
    # The whole ledger, one line per conversation, no progress noise when not on a terminal.
    out = cli("replay", path, "--summary")
    assert "2 conversations: 2 DONE" in out and "ev/s" not in out
    assert [c["state"]["status"] for c in json.loads(cli("replay", path, "--json", "--summary"))] == ["DONE", "DONE"]
    # A dead address is one line and exit 2, not a hang.
    assert "no NATS server reachable" in cli("replay", "--url", "nats://127.0.0.1:1", "-c", cids[0], code=2)
    # A small ledger without -c is shown in full: both timelines, from the file and from the stream.
    assert cli("replay", path).count("timeline of") == 2
    assert cli("replay", "--url", server.url, "--prefix", server.prefix).count("timeline of") == 2


def test_replay_says_how_many_messages_are_not_envelopes_from_the_file_as_from_the_stream(recorded):
    path, _, server = recorded

    async def junk() -> None:
        bus = await Bus.connect(server.url, prefix=server.prefix)
        try:
            await bus.publish_raw(f"{server.prefix}.writing.REQUEST.junk", b"not an envelope")
        finally:
            await bus.close()

    asyncio.run(junk())
    store = SQLiteEventStore(path)  # as the recorder would have stored it
    store.append([], rejects=[Rejected(store.held()[1] + 1, f"{server.prefix}.writing.REQUEST.junk",
                                       b"not an envelope", "INVALID_MESSAGE", "not JSON")])
    store.close()
    live = cli("replay", "--url", server.url, "--prefix", server.prefix, "--summary")
    assert "1 ledger messages are not envelopes" in live
    assert "1 ledger messages are not envelopes" in cli("replay", path, "--summary")


def test_diff_between_two_points(recorded):
    path, (cid, _), _ = recorded
    store = SQLiteEventStore(path, readonly=True)
    positions = [e.position for e in store.read(EventFilter(conversation_ids=(cid,)))]
    first, second = positions[:2]
    store.close()
    out = json.loads(cli("diff", path, cid, "--at", str(first), "--at", str(second), "--json"))
    paths = {c["path"]: c for c in out["changes"]}
    assert paths["tasks.root.status"]["before"] == "SENT" and paths["tasks.root.status"]["after"] == "ACKED"
    assert paths["tasks.root.status"]["change"] == "changed"
    # A field that appears between the two points: null before, never a display string.
    whole = json.loads(cli("diff", path, cid, "--at", str(first), "--at", str(positions[-1]), "--json"))
    added = [c for c in whole["changes"] if c["change"] == "added"]  # the steps' tasks
    assert added and all(c["before"] is None for c in added)
    assert "<absent>" not in json.dumps(whole)
    assert json.loads(cli("diff", path, cid, "--at", "3", "--at", "3", "--json"))["changes"] == []
    cli("diff", path, cid, "--at", "3", code=1)


def test_export_import_verify_and_tamper(recorded, tmp_path):
    path, _, _ = recorded
    dump, copy = tmp_path / "dump.jsonl", tmp_path / "copy.db"
    cli("export", path, "-o", dump)
    cli("import", dump, "--into", copy)
    assert cli("export", copy) .encode() == dump.read_bytes()
    assert "intact" in cli("verify", copy)
    assert "no ledger" in cli("verify", tmp_path / "typo.db", code=2) and not (tmp_path / "typo.db").exists()
    # Edit one event's payload in the copy: verify fails and names the position.
    conn = sqlite3.connect(copy)
    pos, raw = conn.execute("SELECT position, envelope FROM events WHERE action = 'RESPONSE' LIMIT 1").fetchone()
    with conn:
        conn.execute("UPDATE events SET envelope = ? WHERE position = ?", (raw.replace(b'"attempt":1', b'"attempt":2', 1), pos))
    conn.close()
    report = json.loads(cli("verify", copy, "--json", code=1))
    assert [(i["kind"], i["position"]) for i in report["issues"]] == [("ALTERED", pos)]
    # Bytes that no longer decode at all: replay says which position and goes on with the rest.
    conn = sqlite3.connect(copy)
    with conn:
        conn.execute("UPDATE events SET envelope = ? WHERE position = ?", (b"{garbage", pos))
    conn.close()
    res = runner.invoke(app, ["replay", str(copy)])
    assert res.exit_code == 0 and f"position {pos}" in res.stderr and "Traceback" not in res.output
    # An edited export is refused on import unless forced.
    lines = dump.read_bytes().splitlines(keepends=True)
    lines[3] = lines[3].replace(b'"attempt":1', b'"attempt":3', 1)
    edited = tmp_path / "edited.jsonl"
    edited.write_bytes(b"".join(lines))
    cli("import", edited, "--into", tmp_path / "e.db", code=1)
    cli("import", edited, "--into", tmp_path / "f.db", "--force")
    # A malformed line stops the import before anything is written, with the line number.
    broken = tmp_path / "broken.jsonl"
    broken.write_bytes(b"".join(lines[:4]) + b"garbage\n")
    assert "line 5" in cli("import", broken, "--into", tmp_path / "g.db", "--force", code=1)
    assert not (tmp_path / "g.db").exists()


def test_retention_from_env_and_cli(nats_server):
    async def check():
        bus = await Bus.connect(nats_server.url, prefix="ret")
        info = await bus.js.stream_info(bus.subjects.stream)
        await bus.close()
        return info.config

    env = {"LEDGERBUS_LEDGER_MAX_AGE": "2h", "LEDGERBUS_LEDGER_MAX_BYTES": "5MB"}
    import os

    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        cfg = asyncio.run(check())
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    assert cfg.max_age == 7200 and cfg.max_bytes == 5_000_000
    # Connecting without the variables keeps what was set.
    cfg = asyncio.run(check())
    assert cfg.max_age == 7200
    out = json.loads(cli("retention", "--url", nats_server.url, "--prefix", "ret", "--max-age", "0",
                         "--max-bytes", "1MiB", "--json"))
    assert out["maxAge"] is None and out["maxBytes"] == 1 << 20  # machine values: no limit is null
    out = json.loads(cli("retention", "--url", nats_server.url, "--prefix", "ret", "--max-age", "90m", "--json"))
    assert out["maxAge"] == 5400
    assert "maxAge: 5400s" in cli("retention", "--url", nats_server.url, "--prefix", "ret")
    cli("retention", "--url", nats_server.url, "--prefix", "ret", "--max-age", "soon", code=1)
