"""kill -9 the recorder (a subprocess) 20 times while it mirrors a growing ledger.

After a final catch-up the SQLite mirror holds every stream sequence exactly once — events and rejects,
each at the position JetStream gave it, with the same bytes — and `PRAGMA integrity_check` says ok.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path

import pytest
from nats.js import api

from ledgerbus.eventstore.sqlite import SQLiteEventStore
from ledgerbus.schemas.envelope import new_request

from faulthelp import eventually, kill9, spawn

KILLS = 20


def checkpoint(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
            row = c.execute("select value from meta where key='stream_seq'").fetchone()
            return int(row[0]) if row else 0
    except sqlite3.Error:
        return 0  # not created yet


async def load(bus, stop: asyncio.Event) -> int:
    """Valid envelopes in bursts, with an undecodable one now and then (it must become a reject)."""
    n = 0
    while not stop.is_set():
        futs = []
        for _ in range(50):
            n += 1
            if n % 97 == 0:
                await bus.publish_raw(f"{bus.subjects.prefix}.sink.REQUEST.bad", b"{not json")
                continue
            env = new_request(sender="loader", recipient="sink", capability="sink.put", payload={"n": n},
                              conversation_id=f"c{n % 13}")
            futs.append(await bus.publish_async(env))
        await asyncio.gather(*futs)
        await asyncio.sleep(0.05)  # a steady ~1,000 envelopes/s, so each recorder run has batches to write
    return n


@pytest.mark.slow
async def test_recorder_killed_20_times_mid_batch_leaves_no_gap_no_duplicate(nats_server, bus, tmp_path):
    db = tmp_path / "mirror.db"
    rng = random.Random(9)
    stop = asyncio.Event()
    loader = asyncio.create_task(load(bus, stop))
    args = ("--url", nats_server.url, "--db", str(db), "--batch", "150")
    try:
        for i in range(KILLS):
            before = checkpoint(db)
            proc = await spawn("recorder_runner.py", *args, log=tmp_path / "recorder.log")
            # Kill only once it is mirroring (a batch committed), then at a random moment within the next batches.
            await eventually(lambda: checkpoint(db) > before, 30, f"recorder run {i} to commit a batch")
            await asyncio.sleep(rng.uniform(0, 0.15))  # fault injection timing, not synchronisation
            await kill9(proc)
        stop.set()
        await loader
        info = await bus.js.stream_info(bus.subjects.stream)
        last = info.state.last_seq
        proc = await spawn("recorder_runner.py", *args, log=tmp_path / "recorder.log")
        await eventually(lambda: checkpoint(db) >= last, 60, "the final catch-up")
        await kill9(proc)
    finally:
        stop.set()
        loader.cancel()

    with sqlite3.connect(db) as c:
        assert c.execute("pragma integrity_check").fetchone()[0] == "ok"
        events = dict(c.execute("select position, envelope from events").fetchall())
        rejects = dict(c.execute("select position, data from rejects").fetchall())
        ids = [r[0] for r in c.execute("select id from events")]
    assert not set(events) & set(rejects)
    assert sorted([*events, *rejects]) == list(range(1, last + 1)), "a gap or an extra position in the mirror"
    assert len(ids) == len(set(ids))
    assert len(rejects) >= 1
    # Same bytes at the same sequence as JetStream holds.
    sub = await bus.js.subscribe(bus.subjects.all(), ordered_consumer=True, deliver_policy=api.DeliverPolicy.ALL)
    for seq in range(1, last + 1):
        msg = await sub.next_msg(timeout=5)
        assert msg.metadata.sequence.stream == seq
        assert bytes(events.get(seq) or rejects[seq]) == msg.data, f"sequence {seq} differs from the stream"
    await sub.unsubscribe()


@pytest.mark.slow
async def test_recorder_killed_while_its_checkpoint_thread_runs_loses_nothing(nats_server, bus, tmp_path):
    # A backlog to catch up on: each recorder run appends thousands of events, so the store's checkpoint
    # thread (every 5,000) copies the WAL into the database file while the appends go on, and a kill -9
    # lands beside it at a random moment.
    db = tmp_path / "mirror.db"
    rng = random.Random(11)
    total = 48_000
    for start in range(0, total, 1000):
        futs = [await bus.publish_async(new_request(sender="loader", recipient="sink", capability="sink.put",
                                                    payload={"n": n}, conversation_id=f"c{n % 17}"))
                for n in range(start, start + 1000)]
        await asyncio.gather(*futs)
    last = (await bus.js.stream_info(bus.subjects.stream)).state.last_seq
    args = ("--url", nats_server.url, "--db", str(db), "--batch", "1000")
    kills = 0
    while checkpoint(db) < last - 12_000:
        before = checkpoint(db)
        proc = await spawn("recorder_runner.py", *args, log=tmp_path / "recorder.log")
        await eventually(lambda: checkpoint(db) >= before + 6000, 30, f"recorder run {kills} to append 6,000")
        await asyncio.sleep(rng.uniform(0, 0.03))  # fault injection timing, not synchronisation
        await kill9(proc)
        kills += 1
    proc = await spawn("recorder_runner.py", *args, log=tmp_path / "recorder.log")
    await eventually(lambda: checkpoint(db) >= last, 60, "the final catch-up")
    await kill9(proc)

    assert kills >= 3
    with sqlite3.connect(db) as c:
        assert c.execute("pragma integrity_check").fetchone()[0] == "ok"
        positions = [p for (p,) in c.execute("select position from events order by position")]
    assert positions == list(range(1, last + 1)), "a gap or an extra position in the mirror"
    store = SQLiteEventStore(db, readonly=True)
    assert store.verify().ok  # every conversation's hash chain whole across the kills
    store.close()
