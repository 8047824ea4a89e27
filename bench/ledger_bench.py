"""Ledger benchmarks: append, replay from SQLite and from JetStream, and replay's peak memory.

Each figure sits beside the same operation done the plainest way in the same run (the floor), so
the ratio is the overhead ledgerbus adds:

  append.sqlite      SQLiteEventStore.append, batched, hash chain included  | plain sqlite3 executemany of the same bytes
  replay.sqlite      store.read → decode → fold                              | plain sqlite3 loop over the same rows
  decode.sqlite      store.read → decode (no fold)                           | plain sqlite3 loop over the same rows
  replay.jetstream   JetStreamLedger.batches → decode → fold                 | raw nats-py pull fetch of the same messages
  replay.peak_mem    peak RSS growth replaying the whole ledger (fresh process) | the same for the plain sqlite3 loop

    python -m bench.ledger_bench 1000000          # the 1,000,000-event run (not part of the tests)
    python -m bench.ledger_bench 20000 --json
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BATCH = 5000


def synthetic(size: int, *, open_conversations: int = 50) -> Iterator[Any]:
    """`size` StoredEvents, six per conversation, `open_conversations` interleaved at any time."""
    from ledgerbus.eventstore.base import StoredEvent
    from ledgerbus.schemas.codec import Codec
    from ledgerbus.schemas.codes import Action
    from ledgerbus.schemas.envelope import answer, new_request

    enc = Codec().encode
    pos = 0
    while pos < size:
        convs = []
        for _ in range(open_conversations):
            root = new_request(sender="client", recipient="orchestrator", capability="echo.say",
                               payload={"text": "hello ledger", "n": 1})
            step = new_request(sender="orchestrator", recipient="echo", capability="echo.say",
                               payload={"text": "hello ledger", "n": 1}, conversation_id=root.conversation_id,
                               task_id=root.conversation_id + "_say")
            convs.append([root, answer(root, Action.ACK), step, answer(step, Action.ACK),
                          answer(step, Action.RESPONSE, payload={"text": "HELLO LEDGER"}),
                          answer(root, Action.RESPONSE, payload={"text": "HELLO LEDGER"})])
        for i in range(6):  # round-robin: the conversations really are open together
            for conv in convs:
                if pos >= size:
                    return
                pos += 1
                yield StoredEvent(pos, conv[i], enc(conv[i]))


def row(name: str, value: float, unit: str, baseline: float) -> dict[str, Any]:
    ratio = value / baseline if baseline else 0.0
    return {"name": name, "value": round(value, 3), "unit": unit, "baseline": round(baseline, 3), "ratio": round(ratio, 3)}


def bench_append(path: Path, size: int) -> tuple[float, float]:
    from ledgerbus.eventstore.sqlite import SQLiteEventStore

    store = SQLiteEventStore(path)
    chunk: list[Any] = []
    spent = 0.0
    for ev in synthetic(size):
        chunk.append(ev)
        if len(chunk) == BATCH:
            t = time.perf_counter()
            store.append(chunk)
            spent += time.perf_counter() - t
            chunk = []
    t = time.perf_counter()
    store.append(chunk)
    spent += time.perf_counter() - t
    store.close()

    floor_path = path.with_suffix(".floor.db")
    conn = sqlite3.connect(floor_path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE events (position INTEGER PRIMARY KEY, id TEXT UNIQUE, conversation_id TEXT, envelope BLOB)")
    floor = 0.0
    rows: list[tuple[Any, ...]] = []
    for ev in synthetic(size):
        rows.append((ev.position, ev.envelope.id, ev.envelope.conversation_id, ev.raw))
        if len(rows) == BATCH:
            t = time.perf_counter()
            with conn:
                conn.executemany("INSERT INTO events VALUES (?,?,?,?)", rows)
            floor += time.perf_counter() - t
            rows = []
    t = time.perf_counter()
    with conn:
        conn.executemany("INSERT INTO events VALUES (?,?,?,?)", rows)
    floor += time.perf_counter() - t
    conn.close()
    floor_path.unlink()
    return size / spent, size / floor


def rss() -> int:
    """Resident memory now (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def replay_file(path: Path, *, fold: bool = True, sample: Any = None) -> int:
    """Whole-ledger replay as `ledgerbus replay` does it: memory follows open conversations only."""
    from ledgerbus.eventstore.fold import ConversationState, ConversationStatus, apply
    from ledgerbus.eventstore.sqlite import SQLiteEventStore

    store = SQLiteEventStore(path, readonly=True)
    open_: dict[str, ConversationState] = {}
    finished = 0
    n = 0
    for ev in store.read(batch=BATCH, trusted=True):
        n += 1
        if sample is not None and n % BATCH == 0:
            sample()
        if not fold:
            continue
        e = ev.envelope
        st = open_.get(e.conversation_id)
        if st is None:
            st = open_[e.conversation_id] = ConversationState(conversation_id=e.conversation_id)
        apply(st, e, ev.position)
        if st.status is not ConversationStatus.RUNNING:
            del open_[e.conversation_id]
            finished += 1
    store.close()
    return n


def bare_loop(path: Path, sample: Any = None) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    n = 0
    for _pos, _raw in conn.execute("SELECT position, envelope FROM events ORDER BY position"):
        n += 1
        if sample is not None and n % BATCH == 0:
            sample()
    conn.close()
    return n


def timed(fn: Any, *args: Any, **kw: Any) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn(*args, **kw)
    return time.perf_counter() - t, out


def peak_growth(path: Path, mode: str) -> int:
    """Peak resident-memory growth (bytes) of a replay in a fresh process, sampled every batch."""
    code = (
        "import json\n"
        "from pathlib import Path\n"
        "from bench import ledger_bench as b\n"
        "import ledgerbus.eventstore.fold, ledgerbus.eventstore.sqlite\n"
        f"p = Path({str(path)!r}); before = b.rss(); high = [before]\n"
        "sample = lambda: high.append(b.rss())\n"
        f"b.replay_file(p, sample=sample) if {mode!r} == 'ledgerbus' else b.bare_loop(p, sample=sample)\n"
        "sample()\n"
        "print(json.dumps({'growth': max(high) - before}))\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True)
    return int(json.loads(out.stdout.strip().splitlines()[-1])["growth"])


async def bench_jetstream(size: int) -> tuple[float, float]:
    import nats
    from nats.js import api

    from ledgerbus.bus.connection import Bus
    from ledgerbus.bus.server import EmbeddedServer, ServerConfig
    from ledgerbus.eventstore.fold import ConversationState, apply
    from ledgerbus.eventstore.jetstream import JetStreamLedger

    with tempfile.TemporaryDirectory(prefix="ledger-bench-js-") as tmp:
        server = EmbeddedServer(ServerConfig(data_dir=Path(tmp), sync_interval="2m")).start()
        bus = await Bus.connect(server.url, name="ledger-bench")
        try:
            pending: list[Any] = []
            for ev in synthetic(size):
                pending.append(await bus.js.publish_async(bus.subjects.of(ev.envelope), ev.raw))
                if len(pending) >= 1000:
                    await asyncio.gather(*pending)
                    pending = []
            await asyncio.gather(*pending)

            states: dict[str, ConversationState] = {}
            t = time.perf_counter()
            n = 0
            async for chunk in JetStreamLedger(bus).batches(batch=1000):
                for ev in chunk:
                    e = ev.envelope
                    st = states.get(e.conversation_id)
                    if st is None:
                        st = states[e.conversation_id] = ConversationState(conversation_id=e.conversation_id)
                    apply(st, e, ev.position)
                    n += 1
            ours = n / (time.perf_counter() - t)

            nc = await nats.connect(server.url)
            js = nc.jetstream()
            sub = await js.pull_subscribe("lb.>", stream=bus.subjects.stream, config=api.ConsumerConfig(
                ack_policy=api.AckPolicy.NONE, deliver_policy=api.DeliverPolicy.ALL, mem_storage=True))
            t = time.perf_counter()
            got = 0
            while got < size:
                got += len(await sub.fetch(1000, timeout=5))
            floor = got / (time.perf_counter() - t)
            await nc.close()
        finally:
            await bus.close()
            server.stop()
    return ours, floor


def run(size: int) -> list[dict[str, Any]]:
    """The ledger figures for a ledger of `size` events (rows: name, value, unit, baseline, ratio)."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ledger-bench-") as tmp:
        path = Path(tmp) / "ledger.db"
        append, append_floor = bench_append(path, size)
        rows.append(row("append.sqlite", append, "events/s", append_floor))
        floor_s, _ = timed(bare_loop, path)
        replay_s, n = timed(replay_file, path)
        decode_s, _ = timed(replay_file, path, fold=False)
        rows.append(row("replay.sqlite", n / replay_s, "events/s", n / floor_s))
        rows.append(row("decode.sqlite", n / decode_s, "events/s", n / floor_s))
        rows.append(row(f"replay.seconds.{size}", replay_s, "s", floor_s))
        ours_mem, floor_mem = peak_growth(path, "ledgerbus"), peak_growth(path, "bare")
        rows.append(row("replay.peak_mem", ours_mem / 2**20, "MiB", floor_mem / 2**20))
    js_size = min(size, 200_000)  # JetStream publish of a million messages is a separate, slower benchmark
    ours, floor = asyncio.run(bench_jetstream(js_size))
    rows.append(row("replay.jetstream", ours, "events/s", floor))
    return rows


def main(argv: list[str]) -> None:
    size = int(argv[0]) if argv and argv[0].isdigit() else 100_000
    rows = run(size)
    if "--json" in argv:
        print(json.dumps(rows))
        return
    print(f"ledger benchmarks, {size:,} events, python {sys.version.split()[0]}, {os.cpu_count()} cpus")
    print(f"{'figure':<22}{'value':>14} {'unit':<9}{'floor':>14}  ratio")
    for r in rows:
        print(f"{r['name']:<22}{r['value']:>14,.2f} {r['unit']:<9}{r['baseline']:>14,.2f}  {r['ratio']:.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
