"""The peers section's table and targets from figures (id → Measure). Pure: no I/O.

Figure keys are `peer.<system>.<figure>` (bench/peers/section.py); a system that could not run has
`peer.<system>.skipped` or `.failed`, an empty Measure whose unit is the reason.
"""

from __future__ import annotations

from collections.abc import Callable

from bench.harness import Measure, Row, Target, fmt
from bench.peers import SYSTEMS, info

Figures = dict[str, Measure]

LB = "ledgerbus"


def _med(f: Figures, key: str) -> float | None:
    m = f.get(key)
    return m.median if m is not None and m.values else None


def measured(f: Figures) -> list[str]:
    """The systems with figures in this run, in table order."""
    return [s for s in SYSTEMS if _med(f, f"peer.{s}.rate50") is not None or _med(f, f"peer.{s}.seq.p50") is not None]


def peers_measured(f: Figures) -> list[str]:
    return [s for s in measured(f) if info(s).peer]


def _show(m: Measure | None) -> str:
    return m.show() if m is not None and m.values else "—"


def systems_table(f: Figures) -> list[list[str]]:
    out = [["system", "sequential p50", "sequential p99", "conv/s, 50 in flight", "conv/s, 200 in flight",
            "CPU per conversation, all processes (50 in flight)", "fsyncs per conversation (sequential)",
            "completed correctly"]]
    for s in SYSTEMS:
        k = f"peer.{s}"
        label = info(s).label
        for why in ("skipped", "failed"):
            if f"{k}.{why}" in f:
                out.append([label, f"{why}: {f[f'{k}.{why}'].unit}", *["—"] * 6])
        if s not in measured(f):
            continue
        done, wrong = f.get(f"{k}.done"), f.get(f"{k}.wrong")
        correct = "—"
        if done is not None and wrong is not None and done.values:
            bad = sum(wrong.values)
            correct = f"{'all' if bad == 0 else 'NOT all'}: {int(sum(done.values) - bad):,} of {int(sum(done.values)):,}"
        fs = f.get(f"{k}.fsync")
        out.append([label, _show(f.get(f"{k}.seq.p50")), _show(f.get(f"{k}.seq.p99")), _show(f.get(f"{k}.rate50")),
                    _show(f.get(f"{k}.rate200")), _show(f.get(f"{k}.cpu50")),
                    _show(fs) if fs is not None else "not counted (no strace)", correct])
    return out


def setup_table(f: Figures) -> list[list[str]]:
    out = [["system", "durability", "set up as"]]
    for s in SYSTEMS:
        if s in measured(f) or any(f"peer.{s}.{w}" in f for w in ("skipped", "failed")):
            i = info(s)
            out.append([i.label, i.durability, i.setup])
    return out


def failures(f: Figures) -> list[str]:
    return [f"FAILED to run: peers.{s}: {f[f'peer.{s}.failed'].unit}" for s in SYSTEMS if f"peer.{s}.failed" in f]


def cluster_rows(f: Figures) -> list[Row]:
    g = f.get
    if "ledgerbus_r3" not in measured(f):
        return []
    r1, r3 = f"peer.{LB}", "peer.ledgerbus_r3"
    return [
        Row("cluster", "content pipeline conv/s, 50 in flight, 3-node cluster, ledger R3", g(f"{r3}.rate50"),
            "one server, R1", g(f"{r1}.rate50")),
        Row("cluster", "content pipeline conv/s, 200 in flight, R3", g(f"{r3}.rate200"), "one server, R1", g(f"{r1}.rate200")),
        Row("cluster", "sequential conversation p50, R3", g(f"{r3}.seq.p50"), "one server, R1", g(f"{r1}.seq.p50")),
        Row("cluster", "sequential conversation p99, R3", g(f"{r3}.seq.p99"), "one server, R1", g(f"{r1}.seq.p99")),
        Row("cluster", "CPU per conversation, all processes, R3 (three servers)", g(f"{r3}.cpu50"), "one server, R1",
            g(f"{r1}.cpu50")),
    ]


def _best(f: Figures, figure: str, highest: bool) -> tuple[str, float] | None:
    vals = [(s, v) for s in peers_measured(f) if (v := _med(f, f"peer.{s}.{figure}")) is not None]
    if not vals:
        return None
    return (max if highest else min)(vals, key=lambda sv: sv[1])


def targets(f: Figures) -> list[Target]:
    out: list[Target] = []
    none = "not measured in this run (no peer installed)" if not peers_measured(f) else "not measured in this run"

    def vs_best(text: str, figure: str, highest: bool, ok: Callable[[float], bool], unit: str) -> None:
        lb, best = _med(f, f"peer.{LB}.{figure}"), _best(f, figure, highest)
        if lb is None or best is None or best[1] == 0:
            out.append(Target(text, none, None))
            return
        r = lb / best[1]
        out.append(Target(text, f"{r:.2f}× ({fmt(lb)} vs {info(best[0]).label} {fmt(best[1])} {unit})", ok(r)))

    vs_best("conversations/s at 50 in flight ≥ 2 × the best peer", "rate50", True, lambda r: r >= 2, "conv/s")
    vs_best("sequential conversation p50 ≤ the best peer's", "seq.p50", False, lambda r: r <= 1, "ms")
    p50, p99 = _med(f, f"peer.{LB}.seq.p50"), _med(f, f"peer.{LB}.seq.p99")
    if p50 and p99 is not None:
        out.append(Target("sequential conversation p99 ≤ 2 × its p50", f"{p99 / p50:.2f}× ({fmt(p99)} vs {fmt(p50)} ms)",
                          p99 <= 2 * p50))
    else:
        out.append(Target("sequential conversation p99 ≤ 2 × its p50", "not measured in this run", None))
    vs_best("CPU per conversation (all processes) ≤ 0.75 × the best peer", "cpu50", False, lambda r: r <= 0.75, "ms")
    return out
