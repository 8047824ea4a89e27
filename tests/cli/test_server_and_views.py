"""`up`/`down`/`status`, `tail`, `stalls`, `agents`, `conversations` against a real server."""

import json
import os
import subprocess
import sys
import time

import msgspec
from clihelp import one_line_error

from ledgerbus.cli.agents_cmd import breakers
from ledgerbus.eventstore.base import StoredEvent
from ledgerbus.ids import now_ms
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import ErrorInfo, answer, new_request


def test_up_status_down(cli, tmp_path):
    d = str(tmp_path / "lb")
    # `up` in its own process, as people run it: the server must outlive the command that started it.
    up = subprocess.run([sys.executable, "-m", "ledgerbus.cli.main", "up", "--data-dir", d, "--json"],
                        capture_output=True, text=True, timeout=30)
    assert up.returncode == 0, up.stderr
    info = json.loads(up.stdout)
    try:
        assert info["started"] is True and info["url"].startswith("nats://127.0.0.1:")
        again = json.loads(cli("up", "--data-dir", d, "--json", server=False).stdout)
        assert again["started"] is False and again["pid"] == info["pid"]  # reused, not a second server
        st = cli("status", "--data-dir", d, "--json", server=False)
        assert st.exit_code == 0, st.output
        status = json.loads(st.stdout)
        assert status["stream"]["name"] == "LEDGER" and status["stream"]["messages"] == 0
        assert status["embedded"] == {"pid": info["pid"], "dataDir": d, "syncInterval": "always"}
        human = cli("status", "--data-dir", d, server=False)
        assert "LEDGER" in human.stdout and "consumers" in human.stdout
    finally:
        down = cli("down", "--data-dir", d, "--json", server=False)
    assert json.loads(down.stdout)["stopped"] is True
    after = cli("status", "--data-dir", d, server=False)
    assert after.exit_code == 2 and "no ledgerbus server is running" in one_line_error(after)
    assert "no server was running" in cli("down", "--data-dir", d, server=False).stdout


def test_status_shows_consumers_pending_and_agents(cli, examples):
    cli("publish", "research", "research.search", '{"topic": "nats"}')
    status = json.loads(cli("status", "--json").stdout)
    assert status["stream"]["messages"] >= 1
    names = {c["name"]: c for c in status["consumers"]}
    assert {"agent-research", "agent-writing", "agent-editor"} <= set(names)
    assert all(isinstance(c["pending"], int) for c in names.values())
    assert status["agents"] == {"editor": 1, "research": 1, "writing": 1}
    assert status["embedded"] is None  # a server named by --url


def test_tail_history_with_filters(cli, examples):
    r = cli("request", "research", "research.search", '{"topic": "nats"}', "--json")
    cid = json.loads(r.stdout.splitlines()[0])["conversationId"]
    out = cli("tail", "--all", "-c", cid, "--idle", "0.5", "--jsonl")
    assert [json.loads(ln)["action"] for ln in out.stdout.splitlines()] == ["REQUEST", "ACK", "RESPONSE"]
    doc = cli("tail", "--all", "-c", cid, "--idle", "0.5", "--json")  # one document, when tail stops
    assert [e["action"] for e in json.loads(doc.stdout)] == ["REQUEST", "ACK", "RESPONSE"]
    only = cli("tail", "--all", "--action", "ack", "--agent", "research", "--idle", "0.5", "--jsonl")
    assert [json.loads(ln)["action"] for ln in only.stdout.splitlines()] == ["ACK"]
    human = cli("tail", "--all", "--count", "2")
    assert "cli → research" in human.stdout and "REQUEST" in human.stdout and "research.search" in human.stdout
    assert "ACK" in human.stdout
    assert "unknown action 'NAP'" in one_line_error(cli("tail", "--action", "nap"))


def test_tail_follows_live_events(nats_server, examples):
    env = {**os.environ, "LEDGERBUS_NATS_URL": nats_server.url, "LEDGERBUS_PREFIX": nats_server.prefix}
    proc = subprocess.Popen([sys.executable, "-m", "ledgerbus.cli.main", "tail", "--count", "3", "--jsonl"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        assert "tailing" in proc.stderr.readline()  # subscribed: whatever is published now, it sees
        examples.publish(new_request(sender="cli", recipient="research", capability="research.search",
                                     payload={"topic": "streams"}))
        out, _ = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert [json.loads(ln)["action"] for ln in out.splitlines()] == ["REQUEST", "ACK", "RESPONSE"]


def _stalled_history() -> list:
    """A task ACKed 20 s ago and silent since, and one sent 10 s ago that nobody acknowledged."""
    now = now_ms()
    silent = msgspec.structs.replace(
        new_request(sender="orchestrator", recipient="research", capability="research.search", payload={"topic": "a"}),
        timestamp=now - 20_000)
    ack = msgspec.structs.replace(answer(silent, Action.ACK, payload={"instance": "r-1"}), timestamp=now - 19_000)
    unacked = msgspec.structs.replace(
        new_request(sender="orchestrator", recipient="writing", capability="writing.draft", payload={}),
        timestamp=now - 10_000)
    done = new_request(sender="cli", recipient="editor", capability="editor.edit", payload={})
    return [silent, ack, unacked, done, answer(done, Action.RESPONSE, payload={})]


def test_stalls_from_the_live_stream_and_from_a_file(cli, background, tmp_path):
    history = _stalled_history()
    background.publish(*history)
    # The envelopes say 20 s and 10 s ago; JetStream stored them just now, and its time is the one that
    # counts (an agent's clock cannot move a stall window): nothing is late for a 5 s window yet.
    r = cli("stalls", "--stall-after", "5", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == []

    def listed(*limits: str) -> dict:
        """`stalls` with these limits, run until both silent tasks are past them (the stored times)."""
        give_up = time.monotonic() + 10
        while True:
            found = {s["agent"]: s for s in json.loads(cli("stalls", *limits, "--json").stdout)}
            if {"research", "writing"} <= set(found) or time.monotonic() > give_up:
                return found

    found = listed("--stall-after", "0.2", "--receipt", "0.2")
    assert found["research"]["code"] == "STALLED" and 200 <= found["research"]["silentMs"] < 19_000
    assert found["writing"]["code"] == "NO_RECEIPT" and 200 <= found["writing"]["silentMs"] < 10_000
    assert "editor" not in found
    assert found["research"]["conversationId"] == history[0].conversation_id
    assert found["research"]["instance"] == "r-1" and found["writing"]["instance"] is None  # who went silent
    human = cli("stalls", "--stall-after", "0.2", "--receipt", "0.2")
    assert human.exit_code == 1  # stalls found: a failing health check, like verify
    assert "acknowledged, then silent" in human.stdout and "never acknowledged" in human.stdout
    # Generous limits: nothing is late yet, and that is success.
    calm = cli("stalls", "--stall-after", "60", "--receipt", "60", "--json")
    assert calm.exit_code == 0 and json.loads(calm.stdout) == []
    assert cli("stalls", "--stall-after", "60", "--receipt", "60").exit_code == 0
    # A short task timeout turns both into TIMED_OUT.
    assert {s["code"] for s in listed("--timeout", "0.5").values()} == {"TIMED_OUT"}

    from ledgerbus.eventstore.sqlite import SQLiteEventStore

    path = tmp_path / "ledger.db"
    store = SQLiteEventStore(path)
    store.append_envelopes(history)
    store.close()
    # Appended without stored times (as from a mirror older than them): the envelopes' own times stand in.
    from_file = json.loads(cli("stalls", "--ledger", str(path), "--stall-after", "5", "--json", server=False).stdout)
    assert {s["agent"]: s["code"] for s in from_file} == {"research": "STALLED", "writing": "NO_RECEIPT"}
    missing = cli("stalls", "--ledger", str(tmp_path / "nope.db"), server=False)
    assert missing.exit_code == 2 and "nope.db" in one_line_error(missing)


def test_agents_lists_the_directory(cli, examples):
    rows = {r["agent"]: r for r in json.loads(cli("agents", "--json").stdout)}
    assert set(rows) == {"research", "writing", "editor"}
    assert rows["research"]["capabilities"] == ["research.search"]
    assert len(rows["research"]["instances"]) == 1 and rows["research"]["concurrency"] == 16
    assert rows["research"]["breaker"]["state"] == "CLOSED"
    one = json.loads(cli("agents", "research", "--json").stdout)[0]
    schema = one["capabilityDetails"]["research.search"]["inputSchema"]
    assert "ResearchQuery" in json.dumps(schema)
    assert "research.search" in cli("agents").stdout
    r = cli("agents", "nobody")
    assert r.exit_code == 1 and "unknown agent 'nobody'" in one_line_error(r)


def test_breaker_state_comes_from_the_orchestrators_decisions():
    req = new_request(sender="orchestrator", recipient="writing", capability="writing.draft", payload={})
    opened = answer(req, Action.ERROR, sender="orchestrator", error=ErrorInfo(
        code="BREAKER_OPEN", message="circuit breaker open for writing", details={"agents": ["writing"], "retryAfter": 29.5}))
    later = new_request(sender="orchestrator", recipient="writing", capability="writing.draft", payload={})
    events = [StoredEvent(1, req), StoredEvent(2, opened)]
    assert breakers(events)["writing"]["state"] == "OPEN"
    assert breakers(events)["writing"]["retryAfter"] == 29.5
    closed = breakers([*events, StoredEvent(3, later), StoredEvent(4, answer(later, Action.RESPONSE, payload={}))])
    assert closed["writing"]["state"] == "CLOSED"


def test_conversations_lists_status_duration_agents_errors(cli, examples, background, tmp_path):
    background.orchestrator()
    ok = cli("request", "orchestrator", "content.article", '{"topic": "nats", "subtopics": 2}', "--timeout", "20")
    assert ok.exit_code == 0, ok.output
    bad = cli("request", "research", "research.search", '{"topic": "nats"}', "--no-validate", "--json")
    assert bad.exit_code == 0
    failing = new_request(sender="cli", recipient="research", capability="research.search", payload={"topic": 7})
    background.publish(failing)
    cli("tail", "--all", "-c", failing.conversation_id, "--action", "ERROR", "--count", "1")  # wait for its ERROR
    rows = json.loads(cli("conversations", "--json").stdout)
    by_cap = {}
    for r in rows:
        by_cap.setdefault((r["capability"], r["status"]), r)
    article = by_cap[("content.article", "DONE")]
    assert article["agents"] == 4 and article["tasks"] == 5 and article["errors"] == 0  # orchestrator + 3
    assert article["durationMs"] is not None and article["durationMs"] >= 0
    failed = next(r for r in rows if r["conversationId"] == failing.conversation_id)
    assert failed["status"] == "FAILED" and failed["errors"] == 1 and failed["agents"] == 1
    only_failed = json.loads(cli("conversations", "--status", "failed", "--json").stdout)
    assert [r["conversationId"] for r in only_failed] == [failing.conversation_id]
    assert len(json.loads(cli("conversations", "-n", "1", "--json").stdout)) == 1
    assert "content.article" in cli("conversations").stdout
    assert "unknown status 'LOST'" in one_line_error(cli("conversations", "--status", "lost"))
