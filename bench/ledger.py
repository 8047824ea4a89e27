"""Ledger figures: SQLite append, the recorder's mirror rate, replay (decode + fold) from SQLite and
from JetStream, and the peak memory of a replay as the ledger grows.

If `bench/ledger_bench.py` exists (another part of the suite) its `run(size) -> rows` is used too;
these simple measures stay so the ledger targets are always checked against the same-run floor.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from bench.baselines import Figures, _collect
from bench.env import BenchEnv
from bench.procs import ROOT


def synthetic_events(start: int, conversations: int) -> Iterator[Any]:
    """Six envelopes per conversation, as a one-step conversation writes them (positions from `start`)."""
    from ledgerbus.eventstore.base import StoredEvent
    from ledgerbus.schemas.codec import Codec
    from ledgerbus.schemas.codes import Action
    from ledgerbus.schemas.envelope import answer, new_request

    enc = Codec().encode
    pos = start
    for _ in range(conversations):
        root = new_request(sender="client", recipient="orchestrator", capability="echo0.say", payload={"text": "x", "n": 1})
        step = new_request(sender="orchestrator", recipient="echo0", capability="echo0.say", payload={"text": "x", "n": 1},
                           conversation_id=root.conversation_id)
        for env in (root, answer(root, Action.ACK), step, answer(step, Action.ACK),
                    answer(step, Action.RESPONSE, payload={"text": "x", "n": 1}),
                    answer(root, Action.RESPONSE, payload={"status": "DONE"})):
            yield StoredEvent(pos, env, enc(env))
            pos += 1


def fill(store: Any, events: int, batch: int = 1000) -> float:
    """Append `events` synthetic events in batches; seconds spent inside `store.append` only."""
    spent = 0.0
    buf: list[Any] = []
    for ev in synthetic_events(store.last_position() + 1, events // 6):
        buf.append(ev)
        if len(buf) == batch:
            t0 = time.perf_counter()
            store.append(buf)
            spent += time.perf_counter() - t0
            buf = []
    if buf:
        t0 = time.perf_counter()
        store.append(buf)
        spent += time.perf_counter() - t0
    return spent


class Replayer:
    """Decode + fold, keeping only conversations still running (a finished one is counted and dropped)."""

    def __init__(self) -> None:
        from ledgerbus.eventstore.fold import ConversationState, ConversationStatus, apply

        self._new, self._running, self._apply = ConversationState, ConversationStatus.RUNNING, apply
        self.states: dict[str, Any] = {}
        self.events = 0
        self.finished = 0

    def feed(self, env: Any, position: int) -> None:
        cid = env.conversation_id
        st = self.states.get(cid)
        if st is None:
            st = self.states[cid] = self._new(conversation_id=cid)
        self._apply(st, env, position)
        self.events += 1
        if st.status is not self._running:
            del self.states[cid]
            self.finished += 1

    def feed_all(self, events: Iterable[Any]) -> "Replayer":
        for ev in events:
            self.feed(ev.envelope, ev.position)
        return self


def _replay_in_memory(store: Any) -> float:
    """Events/s of the replay's decode + fold alone, over bytes already read (the floor's in-memory twin)."""
    import msgspec

    from ledgerbus.eventstore.sqlite import StoredEnvelope

    rows = [(ev.position, ev.raw) for ev in store.read(trusted=True)]
    decode = msgspec.json.Decoder(StoredEnvelope).decode
    rep = Replayer()
    t0 = time.perf_counter()
    for position, raw in rows:
        rep.feed(decode(raw), position)
    return rep.events / (time.perf_counter() - t0)


def settle(path: Path) -> None:
    """Remove a repeat's database (the next repeat starts from an empty disk cache of it)."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def ledger(env: BenchEnv) -> Figures:
    from ledgerbus.eventstore.sqlite import SQLiteEventStore

    figs: Figures = {}
    n = env.sizes.ledger_events
    with tempfile.TemporaryDirectory() as d:
        for r in range(env.runs):
            os.sync()  # earlier benchmarks' writeback is not this repeat's cost
            store = SQLiteEventStore(Path(d) / f"append{r}.db")
            spent = fill(store, n)
            _collect(figs, "ledger.append.us", spent / store.count() * 1e6, "µs/event", False)
            t0 = time.perf_counter()
            rep = Replayer().feed_all(store.read(trusted=True))  # as `ledgerbus replay` reads
            _collect(figs, "ledger.replay.sqlite", rep.events / (time.perf_counter() - t0), "events/s")
            _collect(figs, "ledger.replay.mem", _replay_in_memory(store), "events/s")
            store.close()
            settle(Path(d) / f"append{r}.db")
        figs.update(await _from_jetstream(env, Path(d)))
        figs.update(_replay_memory(env, Path(d)))
    figs.update(await _external(env))
    return figs


async def _from_jetstream(env: BenchEnv, d: Path) -> Figures:
    """The recorder mirroring JetStream into SQLite, and a replay read straight from JetStream."""
    from nats.js import api

    from ledgerbus.bus.connection import Bus
    from ledgerbus.eventstore.recorder import Recorder
    from ledgerbus.eventstore.sqlite import SQLiteEventStore

    figs: Figures = {}
    n = min(env.sizes.js_async, env.sizes.ledger_events)
    bus = await Bus.connect(env.url, prefix=env.prefix(), name="bench-ledger")
    try:
        futs = [await bus.publish_async(ev.envelope) for ev in synthetic_events(1, n // 6)]
        await asyncio.gather(*futs)
        total = len(futs)
        for r in range(env.runs):
            store = SQLiteEventStore(d / f"recorder{r}.db")
            t0 = time.perf_counter()
            rec = await Recorder(bus, store, durable=f"bench-rec-{r}").start()
            await rec.wait_for(total, timeout=120)
            _collect(figs, "ledger.recorder.rate", total / (time.perf_counter() - t0), "events/s")
            await rec.stop()
            store.close()

            sub = await bus.js.pull_subscribe(bus.subjects.all(), stream=bus.subjects.stream, config=api.ConsumerConfig(
                ack_policy=api.AckPolicy.NONE, deliver_policy=api.DeliverPolicy.ALL, inactive_threshold=30.0))
            decode = bus.codec.decode
            rep = Replayer()
            t0 = time.perf_counter()
            while rep.events < total:
                for msg in await sub.fetch(1000, timeout=10):
                    rep.feed(decode(msg.data), msg.metadata.sequence.stream)
            _collect(figs, "ledger.replay.js", rep.events / (time.perf_counter() - t0), "events/s")
            await sub.unsubscribe()
    finally:
        await bus.close()
    return figs


def _replay_memory(env: BenchEnv, d: Path) -> Figures:
    """Peak RSS growth of a replay (in a fresh process) at a tenth of the size and at full size."""
    from ledgerbus.eventstore.sqlite import SQLiteEventStore

    figs: Figures = {}
    big = env.sizes.replay_memory_events
    for n in (big // 10, big):
        path = d / f"mem{n}.db"
        store = SQLiteEventStore(path)
        fill(store, n, batch=5000)
        store.close()
        out = subprocess.run([sys.executable, "-m", "bench.replay_mem", str(path)], capture_output=True, text=True,
                             cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600, check=True)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        _collect(figs, f"ledger.mem.{n}", res["peak_growth"] / 2**20, "MB", False)
        path.unlink()
    return figs


async def _external(env: BenchEnv) -> Figures:
    """Rows of bench/ledger_bench.py (`run(size) -> [{name, value, unit, baseline}]`) when it is present.

    It starts its own server and event loop, so it runs in a thread; once, at the run's ledger size.
    """
    try:
        mod = importlib.import_module("bench.ledger_bench")
    except ImportError:
        return {}
    run = getattr(mod, "run", None)
    if run is None:
        return {}
    from bench.harness import Measure

    figs: Figures = {}
    try:
        rows = await asyncio.to_thread(run, env.sizes.ledger_events)
    except Exception as exc:  # a broken external module must not cost the whole run
        env.log(f"  bench/ledger_bench.py failed: {type(exc).__name__}: {exc}")
        return {}
    for r in rows or []:
        if not isinstance(r, dict) or "name" not in r or "value" not in r:
            continue
        higher = r.get("unit") not in ("s", "MiB", "MB")
        figs[f"ext.{r['name']}"] = Measure([float(r["value"])], str(r.get("unit", "")), higher)
        if r.get("baseline") is not None:
            figs[f"extbase.{r['name']}"] = Measure([float(r["baseline"])], str(r.get("unit", "")), higher)
    return figs
