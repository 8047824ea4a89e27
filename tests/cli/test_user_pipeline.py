"""A user's own pipeline from the CLI: `--decomposer file.py:attr` and `--policies file.py:attr` on
`orchestrator run`, `fork` and `replay --mode resimulate`, every command a real process.

The user's files live in a temp directory outside the package: an agent (`shout`), and a decomposer that
registers its own capability (`shout.twice`) on import and plans two steps — one the agent answers, one it
refuses, which only the file's PolicySet (a fallback value) turns into a result.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from clihelp import one_line_error

from ledgerbus.bus.connection import Bus
from ledgerbus.bus.requester import Requester
from ledgerbus.schemas.envelope import new_request

AGENT = '''
import msgspec
from ledgerbus import Agent

class Phrase(msgspec.Struct):
    text: str

agent = Agent("shout")

@agent.capability("shout.upper")
async def upper(p: Phrase) -> Phrase:
    return Phrase(p.text.upper())
'''

PIPELINE = '''
import msgspec
from ledgerbus import FallbackValue, Plan, PolicySet, Step, TaskPolicy, registry
from ledgerbus.orchestrator.outcome import ConversationOutcome

class Phrase(msgspec.Struct):
    text: str

registry.register("shout.twice", Phrase, ConversationOutcome, description="a phrase, shouted and echoed")

class Twice:
    capabilities = {"shout.twice"}

    def plan(self, capability, request):
        return Plan([Step("loud", "shout.upper", {"text": request["text"]}),
                     Step("echo", "shout.echo", {"text": request["text"]})])  # the agent has no such capability

    def assemble(self, capability, ctx, failed):
        return {"loud": ctx.results["loud"]["text"], "echo": ctx.results["echo"]["text"]}

policies = PolicySet(per_capability={"shout.echo": TaskPolicy(fallback=FallbackValue({"text": "(quiet)"}))})
'''

# Loaded inside the test process by the bad-spec tests, so it registers nothing.
MISTAKES = '''
from ledgerbus import Plan, PolicySet

class NoCapabilities:
    def plan(self, capability, request):
        return Plan.single(capability, request)

class Unregistered:
    capabilities = ["nobody.registered-this"]
    def plan(self, capability, request):
        return Plan.single(capability, request)

class NeedsArgs:
    capabilities = {"shout.twice"}
    def __init__(self, model):
        self.model = model

policies = PolicySet()
not_policies = {"default": "fast"}
'''


def _env(nats_server: Any) -> dict[str, str]:
    return {**os.environ, "LEDGERBUS_NATS_URL": nats_server.url, "LEDGERBUS_PREFIX": nats_server.prefix}


def ledgerbus(nats_server: Any, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ledgerbus.cli.main", *args], env=_env(nats_server),
                          capture_output=True, text=True, timeout=timeout)


def serve(nats_server: Any, *args: str) -> subprocess.Popen[str]:
    """A serving process, returned once it says it serves (by then it is in the directory)."""
    proc = subprocess.Popen([sys.executable, "-m", "ledgerbus.cli.main", *args], env=_env(nats_server),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    if "serving" not in line:
        proc.kill()
        pytest.fail(f"{' '.join(args)} did not start: {line}{proc.stderr.read()}")
    return proc


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    return err


def answers(nats_server: Any, capability: str, payload: dict[str, Any]) -> list[Any]:
    """Ask the orchestrator directly (no CLI check in front of it) and collect what it answers."""
    async def ask() -> list[Any]:
        bus = await Bus.connect(nats_server.url, prefix=nats_server.prefix, name="tester")
        req = await Requester(bus, "tester").start()
        try:
            env = new_request(sender="tester", recipient="orchestrator", capability=capability, payload=payload)
            return [a async for a in req.stream(env, timeout=20)]
        finally:
            await req.stop()
            await bus.close()

    return asyncio.run(ask())


@pytest.fixture
def user_files(tmp_path: Path) -> Path:
    home = tmp_path / "userproject"
    home.mkdir()
    (home / "shout_agent.py").write_text(AGENT)
    (home / "shout_pipeline.py").write_text(PIPELINE)
    (home / "mistakes.py").write_text(MISTAKES)
    return home


def test_a_users_pipeline_is_served_forked_and_resimulated_from_the_cli(nats_server, user_files, tmp_path):
    pipeline = str(user_files / "shout_pipeline.py")
    agent = serve(nats_server, "agent", "run", f"{user_files / 'shout_agent.py'}:agent")
    try:
        orch = serve(nats_server, "orchestrator", "run", "--decomposer", f"{pipeline}:Twice",
                     "--policies", f"{pipeline}:policies")
        try:
            # Listed in the directory like an agent, with the capability its decomposer declares.
            listed = ledgerbus(nats_server, "agents", "--json", "--history", "0")
            assert listed.returncode == 0, listed.stderr
            rows = {r["agent"]: r for r in json.loads(listed.stdout)}
            assert rows["orchestrator"]["capabilities"] == ["shout.twice"]
            assert len(rows["orchestrator"]["instances"]) == 1

            asked = ledgerbus(nats_server, "request", "orchestrator", "shout.twice", '{"text": "hello"}',
                              "--timeout", "30", "--json")
            assert asked.returncode == 0, asked.stdout + asked.stderr
            assert "no live instance" not in asked.stderr, asked.stderr
            final = [json.loads(line) for line in asked.stdout.splitlines()][-1]
            assert final["action"] == "RESPONSE" and final["sender"] == "orchestrator"
            # The decomposer planned it, the agent shouted, the file's policy filled in the refused step.
            assert final["payload"]["result"] == {"loud": "HELLO", "echo": "(quiet)"}
            assert final["payload"]["status"] == "DEGRADED"
            cid = final["conversationId"]

            # Its schema came from the decomposer's file, through the directory: a bad payload is refused here.
            bad = ledgerbus(nats_server, "request", "orchestrator", "shout.twice", '{"words": 3}', "--timeout", "5")
            assert bad.returncode == 1 and "text" in bad.stderr

            # A capability the decomposer does not declare, though the service's process knows its schema (the
            # demo's): the service itself answers UNKNOWN_CAPABILITY.
            [refusal] = answers(nats_server, "content.article", {"topic": "coffee"})
            assert refusal.action.value == "ERROR" and refusal.sender == "orchestrator"
            assert refusal.error.code == "UNKNOWN_CAPABILITY" and "shout.twice" in refusal.error.message
        finally:
            stop(orch)
        # Stopped: gone from the directory at once.
        listed = ledgerbus(nats_server, "agents", "--json", "--history", "0")
        assert "orchestrator" not in {r["agent"] for r in json.loads(listed.stdout)}

        # The conversation, into a SQLite ledger, with the CLI.
        jsonl, db = tmp_path / "conv.jsonl", tmp_path / "conv.db"
        exported = ledgerbus(nats_server, "export", "--url", nats_server.url, "-c", cid, "-o", str(jsonl))
        assert exported.returncode == 0, exported.stderr
        imported = ledgerbus(nats_server, "import", str(jsonl), "--into", str(db))
        assert imported.returncode == 0, imported.stderr
        lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
        root_ack = next(entry["position"] for entry in lines if entry.get("envelope", {}).get("action") == "ACK"
                        and entry["envelope"]["taskId"] == cid)

        forked = ledgerbus(nats_server, "fork", str(db), cid, "--at", str(root_ack), "--payload", '{"text": "again"}',
                           "--decomposer", f"{pipeline}:Twice", "--policies", f"{pipeline}:policies",
                           "--url", nats_server.url, "--json")
        assert forked.returncode == 0, forked.stdout + forked.stderr
        fork = json.loads(forked.stdout)
        assert fork["original"] == cid and fork["status"] == "DEGRADED"
        fork_events = ledgerbus(nats_server, "export", "--url", nats_server.url, "-c", fork["fork"])
        assert '"loud":"AGAIN"' in fork_events.stdout and '"echo":"(quiet)"' in fork_events.stdout
    finally:
        stop(agent)

    resim = ledgerbus(nats_server, "replay", str(db), "-c", cid, "--mode", "resimulate",
                      "--decomposer", f"{pipeline}:Twice", "--policies", f"{pipeline}:policies", "--json")
    assert resim.returncode == 0, resim.stdout + resim.stderr
    report = json.loads(resim.stdout)
    assert report["same"] and report["conversationId"] == cid and report["requests"] == 2
    # A decomposer that does not plan the conversation's capability cannot re-run it.
    other = ledgerbus(nats_server, "replay", str(db), "-c", cid, "--mode", "resimulate",
                      "--decomposer", f"{user_files / 'mistakes.py'}:Unregistered")
    assert other.returncode == 1 and "Traceback" not in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1 and "does not declare" in other.stderr, other.stderr


# -- bad specs: one line, exit 1, before anything connects --------------------------------------


@pytest.mark.parametrize("command", [["orchestrator", "run"], ["fork", "ledger.db", "c1", "--at", "1"],
                                     ["replay", "ledger.db", "-c", "c1", "--mode", "resimulate"]])
def test_a_decomposer_without_capabilities_is_one_line(cli, user_files, command):
    r = cli(*command, "--decomposer", f"{user_files / 'mistakes.py'}:NoCapabilities")
    assert r.exit_code == 1
    assert "NoCapabilities has no `capabilities`" in one_line_error(r)


@pytest.mark.parametrize("spec,says", [
    ("{dir}/missing.py:Pipeline", "no such file"),
    ("{dir}/mistakes.py:Nope", "has no attribute 'Nope'"),
    ("{dir}/mistakes.py:policies", "'policies' is not a Decomposer (a PolicySet with no plan"),
    ("{dir}/mistakes.py:NeedsArgs", "building NeedsArgs() failed: TypeError"),
    ("no_such_module_anywhere:Pipeline", "cannot import 'no_such_module_anywhere'"),
])
def test_a_bad_decomposer_spec_is_one_line(cli, user_files, spec, says):
    r = cli("orchestrator", "run", "--decomposer", spec.format(dir=user_files))
    assert r.exit_code == 1
    assert says in one_line_error(r)


@pytest.mark.parametrize("command", [["orchestrator", "run"], ["fork", "ledger.db", "c1", "--at", "1"],
                                     ["replay", "ledger.db", "-c", "c1", "--mode", "re-execute"]])
def test_policies_that_are_not_a_policyset_are_one_line(cli, user_files, command):
    r = cli(*command, "--policies", f"{user_files / 'mistakes.py'}:not_policies")
    assert r.exit_code == 1
    assert "'not_policies' is not a ledgerbus PolicySet (it is a dict)" in one_line_error(r)


def test_a_declared_capability_without_a_schema_stops_the_service_in_one_line(cli, user_files):
    r = cli("orchestrator", "run", "--decomposer", f"{user_files / 'mistakes.py'}:Unregistered")
    assert r.exit_code == 1
    assert "no schema is registered for nobody.registered-this" in one_line_error(r)


def test_replay_reconstruct_takes_no_pipeline(cli, user_files):
    r = cli("replay", "ledger.db", "--decomposer", f"{user_files / 'mistakes.py'}:NeedsArgs", server=False)
    assert r.exit_code == 1
    assert "--mode resimulate or re-execute" in one_line_error(r)
