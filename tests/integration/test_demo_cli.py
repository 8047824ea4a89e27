"""Issue 3: the README's demo, run as a user runs it, then replayed from the file it leaves."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path


def ledgerbus(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERBUS_")}
    return subprocess.run([sys.executable, "-m", "ledgerbus.cli.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_demo_prints_article_and_timeline_then_replays(tmp_path: Path):
    demo = ledgerbus("demo", "renewable energy", cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    out = demo.stdout
    assert "article — DONE" in out
    m = re.search(r"ledger: (\S+)\s+\((\d+) events in this conversation\)", out)
    assert m, out
    ledger, n_events = tmp_path / m.group(1), int(m.group(2))
    assert ledger.exists()
    assert n_events >= 9
    for agent in ("research", "writing", "editor"):
        assert re.search(rf"orchestrator → {agent}\s+│ REQUEST", out), agent
        assert re.search(rf"{agent} → orchestrator\s+│ ACK", out), agent
        assert re.search(rf"{agent} → orchestrator\s+│ RESPONSE", out), agent
    conv = re.search(r"--conversation (\S+)", out).group(1)
    # The embedded server was stopped: nothing is left listening for this data dir.
    assert not (tmp_path / ".ledgerbus" / "server.json").exists()

    replay = ledgerbus("replay", str(ledger), "--conversation", conv, "--json", cwd=tmp_path)
    assert replay.returncode == 0, replay.stderr
    [conv_out] = json.loads(replay.stdout)
    state = conv_out["state"]
    assert state["status"] == "DONE"
    tasks = state["tasks"].values()
    assert {t["agent"] for t in tasks} >= {"research", "writing", "editor"}
    assert all(t["status"] == "DONE" for t in tasks)
    assert len(conv_out["events"]) == n_events

    text = ledgerbus("replay", str(ledger), cwd=tmp_path)
    assert text.returncode == 0 and conv in text.stdout.replace("\n", "")


def test_replay_of_missing_file_is_one_clear_line(tmp_path: Path):
    res = ledgerbus("replay", str(tmp_path / "nope.db"), cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error: no ledger at")
    assert "Traceback" not in res.stderr
