"""Issue 18 (1, 2, 7): after `ledgerbus up` the SQLite ledger is always kept, by a supervised recorder;
a data directory keeps its port across a crash; a taken port is one line and exit 2; a crashed demo
leaves no server behind. Every step is the CLI as a user runs it, in its own process, in a fresh directory."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ledgerbus.bus.server import ephemeral_ports

README = Path(__file__).resolve().parents[2] / "README.md"


def _env() -> dict[str, str]:
    # The developer's own settings must not leak in.
    return {k: v for k, v in os.environ.items() if not k.startswith(("LEDGERBUS_", "PYTEST_"))}


def lb(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ledgerbus.cli.main", *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


def lb_json(*args: str, cwd: Path) -> Any:
    out = lb(*args, "--json", cwd=cwd)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert err.startswith("error: ") and len(err.splitlines()) == 1, proc.stdout + proc.stderr
    return err


def readme_echo_agent() -> str:
    body = README.read_text().split("## Writing an agent\n", 1)[1].split("\n## ", 1)[0]
    return next(b for b in re.findall(r"```python\n(.*?)```", body, re.S) if b.startswith("# echo.py"))


def append(url: str, n: int = 1, prefix: str | None = None) -> None:
    """Append `n` REQUESTs to the ledger (no agent needed: the point is what reaches the mirror)."""
    import asyncio

    from ledgerbus.bus.connection import Bus
    from ledgerbus.schemas.envelope import new_request

    async def go() -> None:
        bus = await Bus.connect(url, prefix=prefix, name="test-append")
        try:
            for i in range(n):
                await bus.publish(new_request(sender="cli", recipient="research", capability="research.search",
                                              payload={"topic": f"t{i}"}))
        finally:
            await bus.close()

    asyncio.run(go())


def mirror(cwd: Path) -> dict[str, Any]:
    return lb_json("status", cwd=cwd)["mirror"]


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """A fresh directory; whatever `up` left running in it is stopped afterwards."""
    yield tmp_path
    lb("down", cwd=tmp_path)


def test_quickstart_then_server_crash_same_url_agent_answers_unaided(project: Path):
    up = lb_json("up", cwd=project)
    assert up["started"] is True and up["recorder"]["started"] is True
    (project / "echo.py").write_text(readme_echo_agent())
    agent = subprocess.Popen([sys.executable, "-m", "ledgerbus.cli.main", "agent", "run", "echo.py:agent"],
                             cwd=project, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        until(lambda: lb_json("status", cwd=project)["agents"].get("echo"), 20, "the echo agent to register")
        req = lb("request", "echo", "echo.say", '{"text": "hi"}', cwd=project)
        assert req.returncode == 0 and '"HI"' in req.stdout, req.stdout + req.stderr
        cid = re.search(r"conversation (\S+)", req.stdout).group(1)  # type: ignore[union-attr]
        # The user ran no recorder and no demo: the file is there because `up` keeps it.
        replay = until(lambda: (r := lb("replay", ".ledgerbus/ledger.db", "-c", cid, cwd=project)).returncode == 0
                       and "DONE" in r.stdout and r, 10, "the conversation DONE in the mirror")
        assert "RESPONSE" in replay.stdout

        server_pid = json.loads((project / ".ledgerbus" / "server.json").read_text())["pid"]
        assert server_pid == up["pid"]
        os.kill(server_pid, signal.SIGKILL)
        until(lambda: not alive(server_pid), 10, "nats-server to die")
        again = lb_json("up", cwd=project)
        assert again["url"] == up["url"] and again["started"] is True and again["pid"] != server_pid
        # The supervisor outlived the crash: not a second one.
        assert again["recorder"]["started"] is False
        assert again["recorder"]["supervisorPid"] == up["recorder"]["supervisorPid"]

        req = lb("request", "echo", "echo.say", '{"text": "after the crash"}', "--timeout", "20", cwd=project)
        assert req.returncode == 0 and '"AFTER THE CRASH"' in req.stdout, req.stdout + req.stderr
        assert agent.poll() is None, "the agent had to be restarted"
        cid2 = re.search(r"conversation (\S+)", req.stdout).group(1)  # type: ignore[union-attr]
        until(lambda: "DONE" in lb("replay", ".ledgerbus/ledger.db", "-c", cid2, cwd=project).stdout, 10,
              "the conversation after the crash in the mirror")
    finally:
        agent.terminate()
        agent.wait(30)


def test_up_twice_reports_it_and_down_stops_the_recorder_too(project: Path):
    first = lb_json("up", cwd=project)
    state = json.loads((project / ".ledgerbus" / "recorder.json").read_text())
    supervisor, recorder = state["pid"], state["child"]
    assert first["recorder"] == {"pid": recorder, "supervisorPid": supervisor, "ledger": ".ledgerbus/ledger.db",
                                 "started": True}
    second = lb("up", cwd=project)
    assert second.returncode == 0 and "already running" in second.stdout
    assert f"recorder pid {recorder}" in second.stdout and f"supervised by pid {supervisor}" in second.stdout
    assert alive(supervisor) and alive(recorder)

    down = lb_json("down", cwd=project)
    assert down["stopped"] is True and down["recorderStopped"] is True
    assert not alive(supervisor) and not alive(recorder) and not alive(first["pid"])
    assert not (project / ".ledgerbus" / "recorder.json").exists()


def test_a_killed_recorder_is_restarted_by_its_supervisor(project: Path):
    lb_json("up", cwd=project)
    before = mirror(project)
    killed = before["recorderPid"]
    os.kill(killed, signal.SIGKILL)
    after = until(lambda: (m := mirror(project))["recorderPid"] not in (None, killed) and m, 20,
                  "a new recorder process")
    assert alive(after["recorderPid"])
    # The new one mirrors: an envelope appended now reaches the file.
    append(lb_json("status", cwd=project)["url"])
    caught = until(lambda: (m := mirror(project))["lag"] == 0 and m["position"] > before["position"] and m, 10,
                   "the mirror to hold the new envelope")
    assert caught["position"] == caught["lastSeq"] == 1


def test_record_mirrors_a_server_up_did_not_start_and_status_shows_its_lag(nats_server: Any, tmp_path: Path):
    where = ["--url", nats_server.url, "--prefix", nats_server.prefix]
    ledger = tmp_path / "cluster.db"

    def status() -> dict[str, Any]:
        return lb_json("status", *where, "--ledger", str(ledger), cwd=tmp_path)

    append(nats_server.url, 3, nats_server.prefix)
    rec = subprocess.Popen([sys.executable, "-m", "ledgerbus.cli.main", "record", *where, "--ledger", str(ledger)],
                           cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        m = until(lambda: ledger.exists() and (s := status()["mirror"])["lag"] == 0 and s, 20, "the mirror to catch up")
        assert m["position"] == m["lastSeq"] == 3 and m["recorderPid"] == rec.pid
        rows = sqlite3.connect(ledger).execute("select count(*) from events").fetchone()[0]
        assert rows == 3
        # One recorder per file: a second is refused, at once, and the first goes on.
        second = lb("record", *where, "--ledger", str(ledger), cwd=tmp_path, timeout=20)
        assert second.returncode == 2 and f"already being recorded by pid {rec.pid}" in one_line_error(second)
        append(nats_server.url, 1, nats_server.prefix)
        until(lambda: status()["mirror"]["position"] == 4, 10, "the fourth envelope in the mirror")
    finally:
        rec.send_signal(signal.SIGTERM)
        out, err = rec.communicate(timeout=30)
    assert rec.returncode == 0, err
    assert "holds the ledger up to position 4" in err
    # Nobody records now: status shows the mirror falling behind, and no recorder.
    append(nats_server.url, 2, nats_server.prefix)
    m = status()["mirror"]
    assert (m["position"], m["lastSeq"], m["lag"], m["recorderPid"]) == (4, 6, 2, None)
    human = lb("status", *where, "--ledger", str(ledger), cwd=tmp_path)
    assert "position 4 of 6, lag 2" in human.stdout and "no recorder running" in human.stdout


def _listener(port: int = 0) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do; a TIME_WAIT left on it is no obstacle
    s.bind(("127.0.0.1", port))
    s.listen()
    return s


def _try_listener(port: int) -> socket.socket | None:
    try:
        return _listener(port)
    except OSError:
        return None


@pytest.mark.parametrize("listen", [True, False], ids=["listening", "bound"])
def test_a_taken_port_is_one_line_and_exit_2_quickly(project: Path, listen: bool):
    if listen:
        taker = _listener()
    else:
        taker = socket.socket()
        taker.bind(("127.0.0.1", 0))
    port = taker.getsockname()[1]
    try:
        began = time.monotonic()
        up = lb("up", "--port", str(port), cwd=project)
        took = time.monotonic() - began
    finally:
        taker.close()
    assert up.returncode == 2 and f"port {port} " in one_line_error(up), up.stdout + up.stderr
    assert "started" not in up.stdout and took < 5
    assert not (project / ".ledgerbus" / "server.json").exists()


def test_the_port_a_data_dir_keeps_taken_by_another_process_is_an_error(project: Path):
    first = lb_json("up", cwd=project)
    port = int(first["url"].rsplit(":", 1)[1])
    # Kept outside the ports outgoing connections are given, so none can take it while the server is down.
    assert not Path("/proc/sys/net/ipv4/ip_local_port_range").exists() or port not in ephemeral_ports()
    assert (project / ".ledgerbus" / "port").read_text().strip() == str(port)
    os.kill(first["pid"], signal.SIGKILL)  # server.json still names it: the state a crash leaves
    until(lambda: not alive(first["pid"]), 10, "nats-server to die")
    # The dead server's sockets can hold the port for some milliseconds after it died.
    taker = until(lambda: _try_listener(port), 5, f"port {port} to be free to take")
    try:
        began = time.monotonic()
        up = lb("up", cwd=project)
        took = time.monotonic() - began
    finally:
        taker.close()
    err = one_line_error(up)
    assert up.returncode == 2 and f"port {port} " in err and "--port" in err and took < 5
    assert "started" not in up.stdout
    # Freed again, the directory comes back on its own port.
    assert lb_json("up", cwd=project)["url"] == first["url"]


def test_a_demo_that_fails_stops_the_server_it_started(tmp_path: Path):
    foreign = tmp_path / "notes.db"
    sqlite3.connect(foreign).execute("create table notes (t text)").connection.commit()
    demo = lb("demo", "--ledger", str(foreign), cwd=tmp_path)
    assert demo.returncode == 2 and "not a ledger" in one_line_error(demo)
    state = tmp_path / ".ledgerbus" / "server.json"
    assert not state.exists(), "the demo left its nats-server running"
    conf = str((tmp_path / ".ledgerbus" / "nats-server.conf").resolve())
    leftovers = [p for p in Path("/proc").glob("[0-9]*") if _cmdline(p).find(conf) >= 0]
    assert not leftovers, "a nats-server of the demo is still running"


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_up_with_a_ledger_file_it_cannot_record_is_one_line(project: Path):
    (project / ".ledgerbus").mkdir()
    sqlite3.connect(project / ".ledgerbus" / "ledger.db").execute("create table notes (t text)").connection.commit()
    up = lb("up", cwd=project)
    err = one_line_error(up)
    assert up.returncode == 2 and "recorder could not start" in err and "not a ledger" in err
    assert not (project / ".ledgerbus" / "recorder.json").exists()  # no supervisor left retrying


def test_demo_beside_up_uses_its_recorder_and_leaves_nothing(project: Path):
    lb_json("up", cwd=project)
    recorder = mirror(project)["recorderPid"]
    demo = lb("demo", "tea", "--subtopics", "1", cwd=project)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert f"kept by the recorder of pid {recorder}" in demo.stdout and "DONE" in demo.stdout
    after = lb_json("status", cwd=project)
    assert after["mirror"]["recorderPid"] == recorder and after["mirror"]["position"] > 0
    assert [c["name"] for c in after["consumers"] if "recorder" in c["name"]] == ["recorder"]
    assert after["embedded"] is not None  # the demo did not stop the server `up` runs


def test_restart_backoff_doubles_to_a_cap_and_starts_over_after_a_healthy_run():
    from ledgerbus.cli.supervisor import HEALTHY_AFTER, next_failures, restart_delay

    assert [restart_delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0]
    failures = 0
    for _ in range(4):
        failures = next_failures(failures, ran_for=1.0)
    assert failures == 4
    assert next_failures(failures, ran_for=HEALTHY_AFTER) == 1


def test_stable_ports_avoid_the_ephemeral_range():
    from ledgerbus.bus.server import stable_port_candidates

    assert stable_port_candidates(range(32768, 61000), range(30000, 33000)) == list(range(30000, 32768))
    assert stable_port_candidates(range(1024, 65536)) == []
