"""The benchmark command runs end to end at a tiny size. Timings are never asserted: benchmarks are not tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_quick_runs_and_writes_its_table(tmp_path: Path) -> None:
    out = tmp_path / "latest.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--runs", "1", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, f"bench failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    text = out.read_text()
    assert text.startswith("# ledgerbus benchmarks")
    for heading in ("- date:", "- machine:", "- versions:", "| section | figure | ledgerbus |", "| target | measured | verdict |"):
        assert heading in text, heading
    # Every group produced its figures (a group that silently measured nothing would pass otherwise).
    for figure in ("sequential step p50 latency", "content pipeline conversations/s", "replay from SQLite",
                   "memory per idle agent instance", "JetStream pipelined publish", "raw nats-py durable step",
                   "conversation page (the newest)", "ledgerbus ui: every page under 1 s"):
        assert figure in text, figure
    assert "FAILED to run" not in text
    assert "sequential step p50 latency" in proc.stdout  # the table goes to stdout too
    # The peers section: ledgerbus always runs; each peer has its row, with figures that all came out
    # right, or the reason it was skipped (its packages are an optional extra).
    assert "The content pipeline on ledgerbus and its peers" in text
    table = text.split("The content pipeline on ledgerbus and its peers", 1)[1].split("\n\n")[1]
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines()}
    assert " all: " in rows["ledgerbus"], rows["ledgerbus"]
    for label in ("LangGraph + AsyncSqliteSaver", "DBOS", "Restate (single node)", "Temporal dev server (SQLite)"):
        assert label in rows, label
        assert " all: " in rows[label] or " skipped: " in rows[label], rows[label]
