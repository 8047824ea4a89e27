"""The CLI in security mode: every server-talking command connects as a deployment user (and signs as it);
wrong or missing credentials are one line that says authorization, exit 2; contexts carry credentials."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ledgerbus.security.keys import Identity
from sechelp import Secured, secured_deployment

PIPELINE = ["research", "writing", "editor"]
LB = [sys.executable, "-m", "ledgerbus.cli.main"]


async def lb(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(subprocess.run, [*LB, *args], capture_output=True, text=True, timeout=timeout,
                                   env={**os.environ, **(env or {})})


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    err = done.stderr.strip()
    assert "Traceback" not in err, err
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    return err


class Service:
    """A long-running CLI command (agent run, orchestrator run) whose stderr is read as it comes."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([*LB, *args], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.seen):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None and self.lines.empty():
                raise AssertionError(f"no {text!r} from {self.proc.args}: {''.join(self.seen)}")
            try:
                self.seen.append(self.lines.get(timeout=min(left, 0.5)))
            except queue.Empty:
                pass

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)


@pytest.fixture
async def pipeline(tmp_path: Path) -> AsyncIterator[Secured]:
    async with secured_deployment(tmp_path, PIPELINE, clients=("orchestrator", "cli")) as sec:
        yield sec


async def test_commands_work_as_deployment_users(pipeline: Secured) -> None:
    url, secrets = pipeline.server.url, pipeline.secrets
    cli = ["--url", url, "--nkey", str(secrets / "cli.nk")]
    # Each service finds its own user in the deployment: an agent its type, the orchestrator its --name.
    services = [Service("agent", "run", f"ledgerbus.examples.{a}:agent", "--url", url, "--deployment", str(secrets))
                for a in PIPELINE]
    services.append(Service("orchestrator", "run", "--url", url, "--deployment", str(secrets)))
    try:
        for s in services:
            await asyncio.to_thread(s.wait_for, "serving")
        asked = await lb("request", "research", "research.search", '{"topic": "event sourcing"}', "--json", *cli)
        assert asked.returncode == 0, asked.stderr
        answers = [json.loads(line) for line in asked.stdout.splitlines()]
        assert answers[-1]["action"] == "RESPONSE" and answers[-1]["sender"] == "research"
        assert answers[0]["recipient"] == "cli"  # sent as the user it connected as, so its signature checks out
        article = await lb("request", "orchestrator", "content.article", '{"topic": "coffee"}', "--json",
                           "--timeout", "60", *cli, timeout=90)
        assert article.returncode == 0, article.stderr
        assert json.loads(article.stdout.splitlines()[-1])["payload"]["status"] == "DONE"
        status = await lb("status", "--json", *cli)
        assert status.returncode == 0, status.stderr
        st = json.loads(status.stdout)
        assert st["stream"]["messages"] > 0 and set(PIPELINE) <= set(st["agents"])
        published = await lb("publish", "research", "research.search", '{"topic": "nats"}', "--json", *cli)
        assert published.returncode == 0, published.stderr
        agents = await lb("agents", "--json", *cli)
        assert agents.returncode == 0, agents.stderr
        assert set(PIPELINE) <= {a["agent"] for a in json.loads(agents.stdout)}
        tail = await lb("tail", "--last", "5", "--count", "5", "--jsonl", *cli)
        assert tail.returncode == 0, tail.stderr
        rows = [json.loads(line) for line in tail.stdout.splitlines()]
        assert rows and not any(r.get("rejected") for r in rows)
        assert {r["sender"] for r in rows} <= {"cli", "orchestrator", *PIPELINE}
        letters = await lb("deadletters", "list", "--json", *cli)
        assert letters.returncode == 0 and json.loads(letters.stdout) == [], letters.stderr
        replay = await lb("replay", "--json", *cli)
        assert replay.returncode == 0, replay.stderr
        # Every envelope in the ledger, from the CLI and from the services, is signed by the key of its sender.
        signed = await ledger_signatures(pipeline)
        assert json.loads(published.stdout)["id"] in {env_id for env_id, _, _ in signed}
        assert {"cli", "orchestrator", *PIPELINE} == {sender for _, sender, _ in signed}
        assert all(ok for _, _, ok in signed), signed
    finally:
        codes = [s.stop() for s in services]
    assert codes == [0, 0, 0, 0], [("".join(s.seen), s.proc.args) for s in services]


async def test_authorization_failures_are_one_line(pipeline: Secured, tmp_path: Path) -> None:
    url, secrets = pipeline.server.url, pipeline.secrets
    stranger = tmp_path / "stranger.nk"
    stranger.write_text(Identity.generate("stranger").seed)
    cases = {
        "no credentials": (["status"], "refused a connection without credentials"),
        "a seed the server does not know": (["status", "--nkey", str(stranger)], f"refused the nkey in {stranger}"),
        "a seed outside the deployment": (["tail", "--nkey", str(stranger), "--deployment", str(secrets)],
                                          "is not a user of the deployment"),
        "an unknown user": (["agents", "--deployment", str(secrets), "--user", "bob"], "no user 'bob'"),
        "a wrong password": (["publish", "research", "research.search", "{}", "--no-validate", "--user", "bob",
                              "--password", "nope"], "refused user 'bob'"),
        "an agent reading the ledger": (["tail", "--nkey", str(secrets / "research.nk")], "not permitted"),
    }
    for what, (args, said) in cases.items():
        started = time.monotonic()
        done = await lb(*args, "--url", url)
        err = one_line_error(done)
        assert done.returncode == 2, (what, err)
        assert "authoriz" in err and said in err, (what, err)
        assert "no servers available" not in err
        assert time.monotonic() - started < 15, (what, "took too long")
        if what == "an agent reading the ledger":
            assert "user 'research'" in err and url in err  # who was refused, and where


async def test_flags_and_variables_win_over_the_context(pipeline: Secured, tmp_path: Path) -> None:
    url, secrets = pipeline.server.url, pipeline.secrets
    stranger = tmp_path / "stranger.nk"
    stranger.write_text(Identity.generate("stranger").seed)
    saved = await lb("context", "save", "bad", "--url", url, "--nkey", str(stranger), "--select")
    assert saved.returncode == 0, saved.stderr
    good = await lb("context", "save", "good", "--url", url, "--nkey", str(secrets / "cli.nk"))
    assert good.returncode == 0, good.stderr

    refused = await lb("status")  # the selected context: right server, unknown key
    assert refused.returncode == 2 and f"refused the nkey in {stranger}" in one_line_error(refused)
    assert (await lb("status", "--context", "good", "--json")).returncode == 0
    assert (await lb("status", "--json", env={"LEDGERBUS_CONTEXT": "good"})).returncode == 0
    by_flag = await lb("status", "--json", "--nkey", str(secrets / "cli.nk"))
    assert by_flag.returncode == 0, by_flag.stderr
    by_env = await lb("status", "--json", env={"LEDGERBUS_NKEY": str(secrets / "orchestrator.nk")})
    assert by_env.returncode == 0, by_env.stderr
    moved = await lb("status", "--context", "good", "--url", "nats://127.0.0.1:1")
    assert moved.returncode == 2 and "no NATS server reachable at nats://127.0.0.1:1" in one_line_error(moved)
    # A deployment user from the context sends as itself: publish picks its name for `sender`.
    await lb("context", "select", "good")
    sent = await lb("publish", "research", "research.search", '{"topic": "x"}', "--json")
    assert sent.returncode == 0, sent.stderr
    tail = await lb("tail", "--last", "1", "--count", "1", "--jsonl")
    assert json.loads(tail.stdout)["sender"] == "cli"
    spoof = await lb("publish", "research", "research.search", '{"topic": "x"}', "--sender", "orchestrator")
    assert spoof.returncode == 1 and "signed by the user" in one_line_error(spoof)


needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


@needs_openssl
async def test_tls_ca_from_the_cli(tmp_path: Path) -> None:
    import ssl

    from ledgerbus.security.deployment import TLSFiles
    from test_deploy_configs import self_signed

    cert, key = self_signed(tmp_path)
    ctx = ssl.create_default_context(cafile=str(cert))
    async with secured_deployment(tmp_path, ["research"], clients=("cli",), tls=TLSFiles(str(cert), str(key)),
                                  admin_tls=ctx) as sec:
        nkey = ["--url", sec.server.url, "--nkey", str(sec.secrets / "cli.nk")]
        trusted = await lb("status", "--json", "--tls-ca", str(cert), *nkey)
        assert trusted.returncode == 0, trusted.stderr
        untrusted = await lb("status", *nkey)
        assert untrusted.returncode == 2
        assert "certificate is not trusted" in one_line_error(untrusted)


async def ledger_signatures(sec: Secured) -> list[tuple[str, str, bool]]:
    """(id, sender, signature valid) for every message in the ledger, read as admin."""
    from nats.js import api

    from ledgerbus.errors import InvalidMessage

    bus = sec.admin
    info = await bus.js.stream_info(bus.subjects.stream)
    sub = await bus.js.subscribe(bus.subjects.all(), stream=bus.subjects.stream, ordered_consumer=True,
                                 deliver_policy=api.DeliverPolicy.ALL)
    out = []
    try:
        for _ in range(info.state.messages):
            msg = await sub.next_msg(timeout=5)
            env = bus.codec.decode(msg.data)
            try:
                bus.check_sender(env, msg.subject, msg.data, msg.headers)
                out.append((env.id, env.sender, True))
            except InvalidMessage:
                out.append((env.id, env.sender, False))
    finally:
        await sub.unsubscribe()
    return out


async def test_provision_from_the_cli(tmp_path: Path) -> None:
    from ledgerbus.bus.server import EmbeddedServer, ServerConfig
    from ledgerbus.security.deployment import Deployment
    from ledgerbus.security.permissions import AGENTS_BUCKET, RESULTS_BUCKET
    from ledgerbus.security.securebus import SecureBus

    dep = Deployment.generate(["research"], clients=("cli",))
    dep.save(tmp_path / "secrets")
    server = await asyncio.to_thread(EmbeddedServer(ServerConfig(
        data_dir=tmp_path / "nats", sync_interval="2m", extra=dep.server_lines())).start)
    try:
        not_admin = await lb("security", "provision", "--url", server.url, "--nkey", str(tmp_path / "secrets" / "cli.nk"))
        assert not_admin.returncode == 1 and "connects as user 'cli'" in one_line_error(not_admin)
        done = await lb("security", "provision", "--url", server.url, "--deployment", str(tmp_path / "secrets"))
        assert done.returncode == 0, done.stderr
        assert "research" in done.stdout
        admin = await SecureBus.connect_as(server.url, dep, "admin")
        try:
            for bucket in (RESULTS_BUCKET, AGENTS_BUCKET):
                await admin.js.key_value(bucket)
            assert (await admin.js.consumer_info("LEDGER", "agent-research")).name == "agent-research"
        finally:
            await admin.close()
        after = await lb("agents", "--json", "--url", server.url, "--nkey", str(tmp_path / "secrets" / "cli.nk"))
        assert after.returncode == 0 and json.loads(after.stdout) == [], after.stderr
    finally:
        await asyncio.to_thread(server.stop)

