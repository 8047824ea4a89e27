"""`python -m bench.ui_million`: `ledgerbus ui` on a ledger of a million events, each page timed over HTTP.

    .venv/bin/python -m bench.ui_million                 # 1,000,000 events (about a minute to build)
    .venv/bin/python -m bench.ui_million --events 20000  # a smaller ledger
    .venv/bin/python -m bench.ui_million --keep ledger.db  # keep the ledger it built

The ledger is written straight through the SQLite store's bulk append (`store.append`, batches of 5,000),
in a temporary directory: conversations as the orchestrator writes them — most one step, every tenth a
three-step plan with a fan-in, its note and a retry, every fiftieth a stall that ends DEGRADED — over ten
agent types. Then `ledgerbus ui LEDGER` runs in its own process, as a user starts it, and each page is
fetched over HTTP: once cold (the first request after start-up) and then `--repeats` times (median).
The conversation list, a conversation page, Agents, Stalls & dead letters and Integrity must each answer
in under a second. Also a group of `python -m bench` (`--only ui`), where --quick builds 5,000 events.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.env import BenchEnv
from bench.harness import Measure

TYPES = [f"agent{i}" for i in range(10)]
TARGET_S = 1.0
PAGES = {
    "conversation list": "/",
    "conversation list, filtered (status=DEGRADED)": "/?status=DEGRADED",
    "conversation page (the newest)": "/conversations/{newest}",
    "conversation page (the oldest, three steps)": "/conversations/{oldest}",
    "Agents": "/agents",
    "Stalls & dead letters": "/stalls",
    "Integrity": "/integrity",
}


def conversations(n_events: int, *, start_ms: int) -> Iterator[list[Any]]:
    """Conversations' envelopes, each a list in ledger order, until about `n_events` (pure but for ids)."""
    from ledgerbus.orchestrator.plan import Plan, Step
    from ledgerbus.orchestrator.plannote import plan_note
    from ledgerbus.schemas.codes import Action
    from ledgerbus.schemas.envelope import ErrorInfo, answer, new_request

    made, i = 0, 0
    while made < n_events:
        agent = TYPES[i % len(TYPES)]
        cap = f"{agent}.work"
        root = new_request(sender="client", recipient="orchestrator", capability=cap, payload={"n": i})
        envs = [root, answer(root, Action.ACK, payload={"instance": "orchestrator"})]

        def step(name: str, attempt: int = 1) -> Any:
            return new_request(sender="orchestrator", recipient=agent, capability=cap, payload={"n": i},
                               conversation_id=root.conversation_id, task_id=f"{root.task_id}_{name}",
                               attempt=attempt, causation_id=root.id)

        status = "DONE"
        if i % 10 == 0:  # three steps, two fanning in, one retried
            plan = Plan([Step("a", cap, {}), Step("b", cap, {}), Step("c", cap, {}, depends_on=("a", "b"))])
            note = plan_note(root, plan, "orchestrator")
            assert note is not None
            envs.append(note)
            a, b = step("a"), step("b")
            envs += [a, b, answer(a, Action.ACK), answer(b, Action.ACK), answer(a, Action.RESPONSE, payload={"x": 1})]
            fail = answer(b, Action.ERROR, error=ErrorInfo(code="HANDLER_ERROR", message="upstream busy", retryable=True))
            retry = answer(b, Action.ERROR, sender="orchestrator", error=ErrorInfo(
                code="RETRY_SCHEDULED", message="attempt 1 failed (HANDLER_ERROR); attempt 2 in 0.5s"))
            retry.recipient = "orchestrator"
            b2 = step("b", 2)
            c = step("c")
            envs += [fail, retry, b2, answer(b2, Action.ACK), answer(b2, Action.RESPONSE, payload={"x": 2}),
                     c, answer(c, Action.ACK), answer(c, Action.RESPONSE, payload={"x": 3})]
        elif i % 50 == 7:  # acknowledged, then silent: declared stalled, and the conversation degrades
            s = step("only")
            stall = answer(s, Action.ERROR, sender="orchestrator", error=ErrorInfo(
                code="STALLED", message="acknowledged, then silent for 10.0s"))
            stall.recipient = "orchestrator"
            envs += [s, answer(s, Action.ACK), stall]
            status = "DEGRADED"
        else:
            s = step("only")
            envs += [s, answer(s, Action.ACK), answer(s, Action.RESPONSE, payload={"x": i})]
        final = answer(root, Action.RESPONSE, payload={"status": status},
                       error=ErrorInfo(code="DEGRADED", message="step only stalled") if status == "DEGRADED" else None)
        envs.append(final)
        for k, env in enumerate(envs):  # a conversation a second apart, its envelopes a millisecond apart
            env.timestamp = start_ms + i * 1000 + k
        made += len(envs)
        i += 1
        yield envs


def build(path: Path, n_events: int, batch: int = 5000) -> tuple[int, str, str, float]:
    """Write the ledger; (events written, the newest conversation's id, the oldest's, seconds taken)."""
    from ledgerbus.eventstore.base import StoredEvent
    from ledgerbus.eventstore.sqlite import SQLiteEventStore
    from ledgerbus.schemas.codec import Codec

    enc = Codec().encode
    t0 = time.perf_counter()
    store = SQLiteEventStore(path)
    pos, buf = 1, []
    oldest = newest = ""
    start = int(time.time() * 1000) - (n_events // 6) * 1000
    try:
        for envs in conversations(n_events, start_ms=start):
            oldest = oldest or envs[0].conversation_id
            newest = envs[0].conversation_id
            for env in envs:
                buf.append(StoredEvent(pos, env, enc(env), env.timestamp))
                pos += 1
            if len(buf) >= batch:
                store.append(buf, checkpoint=pos - 1)
                buf = []
        if buf:
            store.append(buf, checkpoint=pos - 1)
    finally:
        store.close()
    return pos - 1, newest, oldest, time.perf_counter() - t0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> float:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as resp:
        resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{url}: HTTP {resp.status}")
    return time.perf_counter() - t0


def _text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=120) as resp:
        return str(resp.read().decode())


def ends(path: Path) -> tuple[int, str, str]:
    """An existing ledger's (events, newest conversation, oldest conversation)."""
    import sqlite3

    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as c:
        n = c.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        newest = c.execute("SELECT conversation_id FROM events ORDER BY position DESC LIMIT 1").fetchone()[0]
        oldest = c.execute("SELECT conversation_id FROM events ORDER BY position LIMIT 1").fetchone()[0]
    return int(n), str(newest), str(oldest)


def measure(path: Path, newest: str, oldest: str, repeats: int,
            log: Any = print) -> tuple[dict[str, tuple[float, float]], float]:
    """Start `ledgerbus ui LEDGER`; each page's (first request, median of `repeats` more) in seconds, and the
    seconds until the Integrity page holds the verify's verdict."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEDGERBUS_", "OTEL_"))}
    proc = subprocess.Popen([sys.executable, "-m", "ledgerbus.cli.main", "ui", str(path), "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the UI did not start: {proc.stderr.read() if proc.stderr else ''}")
                time.sleep(0.05)  # polling for the port to open
        up = time.perf_counter()
        out = {}
        for name, page in PAGES.items():
            url = base + page.format(newest=newest, oldest=oldest)
            first = _get(url)
            again = [_get(url) for _ in range(repeats)]
            out[name] = (first, statistics.median(again))
            log(f"  {name}: first {first * 1000:.0f} ms, then {out[name][1] * 1000:.0f} ms")
        # Agents' counts are caught up from start-up on: until then its page shows them partial, and says so.
        while 'id="counting"' in _text(base + "/agents"):
            time.sleep(0.2)  # polling the page as its own reload does
        log(f"  Agents: every event counted {time.perf_counter() - up:.1f} s after start-up")
        # The verify goes on in the background: how long from the first visit until the page has the verdict.
        t0 = time.perf_counter()
        while 'id="verdict"' not in _text(base + "/integrity"):
            time.sleep(0.5)  # polling the page as its own reload does
        ready = time.perf_counter() - t0 + out["Integrity"][0] + repeats * out["Integrity"][1]
        log(f"  Integrity: the verdict after {ready:.1f} s of background verify")
        return out, ready
    finally:
        proc.terminate()
        proc.wait(10)


def report(events: int, took_build: float, figures: dict[str, tuple[float, float]], ready: float) -> str:
    lines = [f"ledgerbus ui on a ledger of {events:,} events (built in {took_build:.0f} s):", "",
             f"{'page':48} {'first':>9} {'median':>9}  under {TARGET_S:.0f} s"]
    for name, (first, med) in figures.items():
        ok = "yes" if max(first, med) < TARGET_S else "NO"
        lines.append(f"{name:48} {first * 1000:7.0f} ms {med * 1000:7.0f} ms  {ok}")
    lines += ["", f"Integrity's verdict (the full verify, in the background) was on the page {ready:.1f} s after the first visit."]
    return "\n".join(lines)


def ui(env: BenchEnv) -> dict[str, Measure]:
    """The `ui` group of `python -m bench`: every page's median, at the run's size."""
    with tempfile.TemporaryDirectory(prefix="ledgerbus-ui-bench-") as d:
        path = Path(d) / "ledger.db"
        events, newest, oldest, took = build(path, env.sizes.ui_events)
        env.log(f"  built {events:,} events in {took:.1f} s")
        figures, ready = measure(path, newest, oldest, max(env.runs, 1), env.log)
    out = {"ui.verify.ready": Measure([ready], "s", higher_is_better=False)}
    for name, (first, med) in figures.items():
        out[f"ui.{name}"] = Measure([first * 1000], "ms first", higher_is_better=False)
        out[f"ui.{name}.median"] = Measure([med * 1000], "ms", higher_is_better=False)
    out["ui.events"] = Measure([float(events)], "events")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ui_million", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=1_000_000, help="ledger size (default 1,000,000)")
    p.add_argument("--repeats", type=int, default=3, help="requests per page after the first (median)")
    p.add_argument("--keep", type=Path, default=None, help="build the ledger here and keep it")
    p.add_argument("--ledger", type=Path, default=None, help="measure this ledger (one --keep built) instead")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ledgerbus-ui-bench-") as d:
        if args.ledger is not None:
            path, took = args.ledger, 0.0
            events, newest, oldest = ends(path)
        else:
            path = args.keep or Path(d) / "ledger.db"
            if path.exists():
                p.error(f"{path} exists: give a new file to --keep, or measure it with --ledger")
            print(f"building {args.events:,} events in {path} …", file=sys.stderr, flush=True)
            events, newest, oldest, took = build(path, args.events)
            print(f"built in {took:.1f} s; starting the UI", file=sys.stderr, flush=True)
        figures, ready = measure(path, newest, oldest, args.repeats, lambda m: print(m, file=sys.stderr, flush=True))
    print(report(events, took, figures, ready))
    return 0  # a benchmark never fails on a timing: the table says which page missed its target


if __name__ == "__main__":
    sys.exit(main())
