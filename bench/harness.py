"""Pure pieces of the benchmark runner: samples, medians with min–max, rows and their rendering.

A benchmark returns `Measure`s (one value per repeat); the runner lines each ledgerbus figure up
beside the baseline measured in the same run and prints the ratio. Nothing here does I/O.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field


class BenchError(Exception):
    """A benchmark could not run (a worker did not start, a server did not answer)."""


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of `values`; 0.0 when there are none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


@dataclass
class Measure:
    """One figure measured `len(values)` times; shown as the median with min–max."""

    values: list[float]
    unit: str
    higher_is_better: bool = True

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def lo(self) -> float:
        return min(self.values) if self.values else float("nan")

    @property
    def hi(self) -> float:
        return max(self.values) if self.values else float("nan")

    def show(self) -> str:
        if not self.values:
            return "n/a"
        m, lo, hi = (fmt(v) for v in (self.median, self.lo, self.hi))
        return f"{m} {self.unit} ({lo}–{hi})" if len(self.values) > 1 else f"{m} {self.unit}"


def fmt(v: float) -> str:
    """Three significant figures, thousands separated: numbers a person reads at a glance."""
    if v != v:  # NaN
        return "n/a"
    a = abs(v)
    if a < 1e-9:  # a difference of two equal medians, give or take a rounding error
        return "0"
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


@dataclass
class Row:
    """A ledgerbus figure beside its baseline. `ratio` = ledgerbus ÷ baseline (medians)."""

    section: str
    figure: str
    value: Measure | None
    baseline_name: str = ""
    baseline: Measure | None = None
    note: str = ""
    compare: bool = True  # False: the "baseline" column is a companion figure (a p99 beside a p50), no ratio

    @property
    def ratio(self) -> float | None:
        if not self.compare or self.value is None or self.baseline is None or not self.value.values or not self.baseline.values:
            return None
        if self.baseline.median == 0:
            return None
        return self.value.median / self.baseline.median


@dataclass
class Target:
    """A target from the issue, checked against figures of the same run."""

    text: str
    measured: str
    met: bool | None  # None: could not be measured in this run
    why: str = ""

    @property
    def verdict(self) -> str:
        return {True: "met", False: "NOT met", None: "not measured"}[self.met]


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tables: list[tuple[str, list[list[str]]]] = field(default_factory=list)  # (title, header row + rows)


def rows_table(rows: Sequence[Row]) -> list[list[str]]:
    out = [["section", "figure", "ledgerbus", "baseline", "baseline value", "ratio"]]
    for r in rows:
        ratio = r.ratio
        out.append([
            r.section,
            r.figure + (f" — {r.note}" if r.note else ""),
            r.value.show() if r.value else "n/a",
            r.baseline_name or "—",
            r.baseline.show() if r.baseline else "—",
            f"{ratio:.2f}×" if ratio is not None else "—",
        ])
    return out


def targets_table(targets: Sequence[Target]) -> list[list[str]]:
    out = [["target", "measured", "verdict"]]
    for t in targets:
        out.append([t.text, t.measured + (f" ({t.why})" if t.why else ""), t.verdict])
    return out


def markdown(table: Sequence[Sequence[str]]) -> str:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|")

    head, *body = table
    lines = ["| " + " | ".join(esc(c) for c in head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def plain(table: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = []
    for n, row in enumerate(table):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
