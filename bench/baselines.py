"""Baselines measured in the same run as ledgerbus: raw nats-py, raw JetStream, FastStream, the storage floor.

Each function returns figures keyed by a short id; every figure holds one value per repeat.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec

from bench.agents_trivial import ECHO_PAYLOAD
from bench.env import BenchEnv, rate_and_latency, timed_calls
from bench.harness import Measure
from bench.procs import spawn

Figures = dict[str, Measure]


def _collect(figs: Figures, key: str, value: float, unit: str, higher_is_better: bool = True) -> None:
    figs.setdefault(key, Measure([], unit, higher_is_better)).values.append(value)


async def until_answered(call: Any, timeout: float = 15.0) -> None:
    """Retry `call` until a responder answers: a worker's subscription may reach the server a moment
    after the worker says it is ready (FastStream does not flush on start)."""
    import nats.errors

    deadline = time.monotonic() + timeout
    while True:
        try:
            await call()
            return
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def request_reply(env: BenchEnv, figs: Figures, key: str, call: Any, unit: str,
                        cpu: Any = None) -> None:
    """Sequential and `inflight`-at-once runs of `call`, repeated: rate, p50 and p99 of each mode.

    `cpu`, when given, returns {figure suffix: CPU seconds so far}; the in-flight run then also
    records each as µs of CPU per call.
    """
    for _ in range(env.runs):
        for mode, n, inflight in (("seq", env.sizes.steps_seq, 1), ("conc", env.sizes.steps_conc, env.sizes.inflight)):
            before = cpu() if cpu and mode == "conc" else {}
            elapsed, lat = await timed_calls(n, inflight, call)
            after = cpu() if cpu and mode == "conc" else {}
            rate, p50, p99 = rate_and_latency(n, elapsed, lat)
            _collect(figs, f"{key}.{mode}.rate", rate, unit)
            _collect(figs, f"{key}.{mode}.p50", p50, "µs", False)
            _collect(figs, f"{key}.{mode}.p99", p99, "µs", False)
            for name, t in after.items():
                _collect(figs, f"{key}.{mode}.{name}", (t - before[name]) / n * 1e6, "µs CPU/step", False)


def sample_envelope_bytes() -> bytes:
    """A typical REQUEST envelope on the wire, so raw publishes carry what a step carries."""
    from ledgerbus.schemas.codec import Codec
    from ledgerbus.schemas.envelope import new_request

    env = new_request(sender="bench", recipient="echo0", capability="echo0.say", payload=dict(ECHO_PAYLOAD))
    return Codec().encode(env)


async def raw_nats(env: BenchEnv) -> Figures:
    """Core NATS request-reply to a responder in another process: sequential and `inflight` at once."""
    import nats

    figs: Figures = {}
    subject = f"rawbench.{uuid.uuid4().hex[:8]}"
    worker = await spawn("raw", env.url, subject)
    nc = await nats.connect(env.url, name="bench-raw")
    data = sample_envelope_bytes()
    try:
        async def call() -> Any:
            return await nc.request(subject, data, timeout=10)

        await until_answered(call)
        await timed_calls(50, 10, call)  # warm-up: connections, inbox subscription
        await request_reply(env, figs, "raw", call, "req/s")
    finally:
        await nc.close()
        await worker.stop()
    return figs


async def raw_jetstream(env: BenchEnv) -> Figures:
    """JetStream publish into a file stream like the ledger, with a Nats-Msg-Id as every envelope has."""
    import nats
    from nats.js import api

    figs: Figures = {}
    nc = await nats.connect(env.url, name="bench-js")
    js = nc.jetstream()
    stream = f"RAWJS{uuid.uuid4().hex[:6].upper()}"
    subj = f"rawjs{stream.lower()}"
    await js.add_stream(api.StreamConfig(name=stream, subjects=[f"{subj}.>"], storage=api.StorageType.FILE,
                                         retention=api.RetentionPolicy.LIMITS, duplicate_window=120.0))
    data = sample_envelope_bytes()
    seq = 0

    def headers() -> dict[str, str]:
        nonlocal seq
        seq += 1
        return {"Nats-Msg-Id": f"m{seq}"}

    try:
        async def one() -> Any:
            return await js.publish(f"{subj}.x", data, headers=headers())

        await timed_calls(50, 1, one)
        for _ in range(env.runs):
            n = env.sizes.js_seq
            elapsed, lat = await timed_calls(n, 1, one)
            rate, p50, _ = rate_and_latency(n, elapsed, lat)
            _collect(figs, "js.seq.rate", rate, "msg/s")
            _collect(figs, "js.seq.p50", p50, "µs", False)
            n = env.sizes.js_async
            t0 = time.perf_counter()
            futs = [await js.publish_async(f"{subj}.x", data, headers=headers()) for _ in range(n)]
            await asyncio.gather(*futs)
            _collect(figs, "js.async.rate", n / (time.perf_counter() - t0), "msg/s")
    finally:
        try:
            await js.delete_stream(stream)
        finally:
            await nc.close()
    return figs


async def raw_step(env: BenchEnv) -> Figures:
    """A durable step in plain nats-py, the floor under the step targets: the REQUEST published into a
    file stream and acknowledged, pulled by an agent in another process, its ACK and RESPONSE published
    into the stream, the RESPONSE heard on core NATS (as ledgerbus's Requester hears it)."""
    import nats
    from nats.js import api

    figs: Figures = {}
    nc = await nats.connect(env.url, name="bench-rawstep")
    js = nc.jetstream()
    tag = uuid.uuid4().hex[:6]
    stream, subject = f"RAWSTEP{tag.upper()}", f"rawstep{tag}"
    await js.add_stream(api.StreamConfig(name=stream, subjects=[f"{subject}.>"], storage=api.StorageType.FILE,
                                         retention=api.RetentionPolicy.LIMITS, duplicate_window=120.0))
    worker = await spawn("rawstep", env.url, stream, subject, str(max(env.sizes.inflight, 16)))
    data = sample_envelope_bytes()
    waiting: dict[str, asyncio.Future[None]] = {}
    count = 0

    async def on_answer(msg: Any) -> None:
        if msg.headers and msg.headers.get("a") == "R":
            fut = waiting.pop(msg.subject.rsplit(".", 1)[1], None)
            if fut is not None and not fut.done():
                fut.set_result(None)

    sub = await nc.subscribe(f"{subject}.ans.>", cb=on_answer)
    try:
        async def call() -> None:
            nonlocal count
            count += 1
            key = str(count)
            fut = waiting[key] = asyncio.get_running_loop().create_future()
            await js.publish(f"{subject}.req.{key}", data, headers={"Nats-Msg-Id": f"q{key}"})
            async with asyncio.timeout(10):
                await fut

        await timed_calls(50, 10, call)
        await request_reply(env, figs, "rawstep", call, "steps/s")
    finally:
        await sub.unsubscribe()
        await worker.stop()
        try:
            await js.delete_stream(stream)
        finally:
            await nc.close()
    return figs


async def faststream(env: BenchEnv) -> Figures:
    """FastStream request-reply to a pydantic-typed handler in another process (it logs nothing)."""
    try:
        from faststream.nats import NatsBroker
    except ImportError:
        env.log("  faststream not installed (pip install -e '.[bench]'): FastStream baseline skipped")
        return {}
    from bench.fs_models import Echo

    figs: Figures = {}
    subject = f"fsbench.{uuid.uuid4().hex[:8]}"
    worker = await spawn("faststream", env.url, subject)
    broker = NatsBroker(env.url, logger=None)
    await broker.connect()
    body = Echo(**ECHO_PAYLOAD)
    try:
        async def call() -> Any:
            msg = await broker.request(body, subject, timeout=10)
            return Echo.model_validate(await msg.decode())

        await until_answered(call)
        await timed_calls(20, 5, call)
        await request_reply(env, figs, "fs", call, "req/s")
    finally:
        await broker.stop()
        await worker.stop()
    return figs


def storage_floor(env: BenchEnv) -> Figures:
    """Plain sqlite3 batched inserts of envelope rows, and a bare msgspec decode + dict fold.

    The envelopes are the ledger benchmark's own (bench/ledger.py), so both sides handle the same
    bytes. The replay floor reads them back from SQLite as ledgerbus's replay does; the same decode +
    dict fold over bytes already in memory is kept beside it (`floor.decode.rate`)."""
    from bench.ledger import settle, synthetic_events

    figs: Figures = {}
    n = env.sizes.ledger_events
    rows = [(ev.position, ev.envelope.id, ev.envelope.conversation_id, ev.raw) for ev in synthetic_events(1, n // 6)]
    n = len(rows)
    with tempfile.TemporaryDirectory() as d:
        for r in range(env.runs):
            os.sync()  # as the ledger's repeats: earlier writeback is not this repeat's cost
            conn = sqlite3.connect(os.path.join(d, f"floor{r}.db"))
            conn.execute("PRAGMA page_size=16384")  # the ledger's own page size: the floor gets every setting it has
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("CREATE TABLE events (position INTEGER PRIMARY KEY, id TEXT UNIQUE, conversation_id TEXT, envelope BLOB)")
            t0 = time.perf_counter()
            for i in range(0, n, 1000):
                with conn:
                    conn.executemany("INSERT INTO events VALUES (?,?,?,?)", rows[i:i + 1000])
            _collect(figs, "floor.sqlite.us", (time.perf_counter() - t0) / n * 1e6, "µs/event", False)
            t0 = time.perf_counter()
            _dict_fold(raw for (raw,) in conn.execute("SELECT envelope FROM events ORDER BY position"))
            _collect(figs, "floor.replay.rate", n / (time.perf_counter() - t0), "events/s")
            blobs = [raw for (raw,) in conn.execute("SELECT envelope FROM events ORDER BY position")]
            conn.close()
            settle(Path(d) / f"floor{r}.db")
            t0 = time.perf_counter()
            _dict_fold(blobs)
            _collect(figs, "floor.decode.rate", n / (time.perf_counter() - t0), "events/s")
    return figs


def _dict_fold(blobs: Iterable[bytes]) -> dict[str, dict[str, Any]]:
    decode = msgspec.json.Decoder().decode
    state: dict[str, dict[str, Any]] = {}
    for raw in blobs:
        e = decode(raw)
        conv = state.setdefault(e["conversationId"], {})
        conv[e["taskId"]] = e["action"]
    return state
