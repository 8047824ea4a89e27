"""`ledgerbus agent run` and `ledgerbus orchestrator run` as real processes: serve, then drain on SIGTERM/SIGINT."""

import asyncio
import os
import signal
import subprocess
import sys
import threading

import pytest

from ledgerbus.bus.requester import Requester
from ledgerbus.schemas.envelope import new_request

SLOW_AGENT = '''
import asyncio
import msgspec
from ledgerbus import Agent, CapabilityRegistry

class Job(msgspec.Struct):
    seconds: float

agent = Agent("slow", registry=CapabilityRegistry())

@agent.capability("slow.work")
async def work(job: Job, ctx) -> Job:
    await ctx.progress(stage="working")
    await asyncio.sleep(job.seconds)  # the work itself: long enough to be caught in flight
    return job
'''


def start(args, nats_server):
    env = {**os.environ, "LEDGERBUS_NATS_URL": nats_server.url, "LEDGERBUS_PREFIX": nats_server.prefix}
    proc = subprocess.Popen([sys.executable, "-m", "ledgerbus.cli.main", *args], stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    line = proc.stderr.readline()  # printed once serving
    if "serving" not in line:
        proc.kill()
        pytest.fail(f"did not start: {line}{proc.stderr.read()}")
    return proc


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_agent_run_drains_in_flight_work_on_signal(nats_server, background, tmp_path, sig):
    (tmp_path / "slow.py").write_text(SLOW_AGENT)
    proc = start(["agent", "run", f"{tmp_path / 'slow.py'}:agent"], nats_server)
    try:
        working = threading.Event()
        seen: list[str] = []

        async def ask() -> None:
            req = await Requester(background.bus, "tester").start()
            env = new_request(sender="tester", recipient="slow", capability="slow.work", payload={"seconds": 1.0})
            async for ans in req.stream(env, timeout=15):
                seen.append(ans.action.value)
                if ans.action.value == "PROGRESS":
                    working.set()
            await req.stop()

        answers = asyncio.run_coroutine_threadsafe(ask(), background.loop)
        assert working.wait(10), seen
        proc.send_signal(sig)  # mid-task
        answers.result(15)
        assert seen == ["ACK", "PROGRESS", "RESPONSE"]  # the task in flight finished after the signal
        _, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "draining: 1 task(s) in flight" in err and "stopped slow: 1 task(s) handled" in err


def test_agent_run_bad_spec_is_one_line(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = cli("agent", "run", "no_such_module:agent")
    assert r.exit_code == 1 and "cannot import 'no_such_module'" in r.stderr
    assert "Traceback" not in r.output
    (tmp_path / "broken.py").write_text("import msgspec\nraise RuntimeError('no API key')\n")
    r = cli("agent", "run", "broken:agent")
    assert r.exit_code == 1 and "RuntimeError: no API key" in r.stderr and "broken.py, line 2" in r.stderr
    (tmp_path / "typo.py").write_text("def f(:\n")
    r = cli("agent", "run", f"{tmp_path / 'typo.py'}:agent")
    assert r.exit_code == 1 and "SyntaxError" in r.stderr and "line 1" in r.stderr
    assert "Traceback" not in r.output


def test_orchestrator_run_serves_requests_until_stopped(nats_server, cli, examples):
    proc = start(["orchestrator", "run"], nats_server)
    try:
        r = cli("request", "orchestrator", "content.article", '{"topic": "event sourcing", "subtopics": 2}',
                "--timeout", "20")
        assert r.exit_code == 0, r.output
        assert "RESPONSE from orchestrator" in r.stdout and '"status": "DONE"' in r.stdout
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
