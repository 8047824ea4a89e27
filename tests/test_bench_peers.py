"""The peers section's pure parts: strace's count, a missing peer's reason, the targets' ratios."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # bench/ is not an installed package

from bench.harness import Measure  # noqa: E402
from bench.peers import PeerInfo  # noqa: E402
from bench.peers.report import systems_table, targets  # noqa: E402
from bench.peers.section import strace_calls  # noqa: E402
from bench.peers.workload import run_inline  # noqa: E402

STRACE_C = """\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 71.43    0.004520          45       100           fsync
 28.57    0.001808          36        50         3 fdatasync
------ ----------- ----------- --------- --------- ----------------
100.00    0.006328          42       150         3 total
"""


def test_strace_count_is_the_total_line_and_zero_without_one() -> None:
    assert strace_calls(STRACE_C) == 150
    assert strace_calls("") == 0


def test_a_peer_whose_package_is_missing_says_which() -> None:
    info = PeerInfo(name="ledgerbus", label="x", setup="", durability="", packages=("no-such-dist-for-bench",))
    why = info.missing()
    assert why is not None and "no-such-dist-for-bench" in why and "bench-peers" in why


def _figs(**per_system: tuple[float, float, float, float]) -> dict[str, Measure]:
    """system=(rate50, p50, p99, cpu50) → the figure keys section.py writes."""
    f: dict[str, Measure] = {}
    for s, (rate, p50, p99, cpu) in per_system.items():
        f[f"peer.{s}.rate50"] = Measure([rate], "conv/s")
        f[f"peer.{s}.seq.p50"] = Measure([p50], "ms", False)
        f[f"peer.{s}.seq.p99"] = Measure([p99], "ms", False)
        f[f"peer.{s}.cpu50"] = Measure([cpu], "ms", False)
        f[f"peer.{s}.done"] = Measure([10.0], "conversations")
        f[f"peer.{s}.wrong"] = Measure([0.0], "wrong")
    return f


def test_targets_compare_with_the_best_peer_of_each_figure_and_ignore_the_r3_run() -> None:
    f = _figs(ledgerbus=(300, 10, 30, 3), ledgerbus_r3=(1000, 1, 1, 0.1), langgraph=(140, 8, 9, 5),
              restate=(100, 12, 13, 4))
    got = {t.text: t for t in targets(f)}
    rate = got["conversations/s at 50 in flight ≥ 2 × the best peer"]
    assert rate.met is True and rate.measured.startswith("2.14×") and "LangGraph" in rate.measured
    p50 = got["sequential conversation p50 ≤ the best peer's"]
    assert p50.met is False and p50.measured.startswith("1.25×")
    assert got["sequential conversation p99 ≤ 2 × its p50"].met is False  # 30 > 2 × 10
    cpu = got["CPU per conversation (all processes) ≤ 0.75 × the best peer"]
    assert cpu.met is True and cpu.measured.startswith("0.75×") and "Restate" in cpu.measured


def test_without_peers_the_targets_are_not_measured_and_a_skip_shows_its_reason() -> None:
    f = _figs(ledgerbus=(300, 10, 15, 3))
    f["peer.dbos.skipped"] = Measure([], "not installed: dbos")
    got = {t.text: t.met for t in targets(f)}
    assert got.pop("sequential conversation p99 ≤ 2 × its p50") is True  # ledgerbus's own figures
    assert set(got.values()) == {None}
    rows = {r[0]: r for r in systems_table(f)}
    assert rows["DBOS"][1] == "skipped: not installed: dbos"
    assert rows["ledgerbus"][-1] == "all: 10 of 10"


def test_the_expected_article_is_built_from_every_research_angle() -> None:
    art = run_inline("solar power")
    assert art["title"] == art["topic"] == "solar power"
    assert art["body"].count("a fact about solar power") == 3 and art["sources"] == ["doc-1"]
