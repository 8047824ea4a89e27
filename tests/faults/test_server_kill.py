"""kill -9 the nats-server during a load, restart it on the same store: nothing acknowledged is lost.

Agents, recorder and driver keep their connections (nats-py reconnects by itself) and every conversation
finishes. The embedded server's default `sync_interval: always` is what makes an acknowledged envelope
survive the crash (README, Guarantees).
"""

from __future__ import annotations

import asyncio

import pytest

from ledgerbus.bus.connection import Bus
from ledgerbus.bus.server import EmbeddedServer, ServerConfig
from ledgerbus.eventstore.recorder import Recorder

from faulthelp import eventually
from loadgen import AckLog, Driver, agents

CONVERSATIONS, STEPS = 40, 50  # the 2,000 conversation steps (6,000 envelopes)


@pytest.mark.slow
async def test_server_kill9_mid_load_loses_no_acknowledged_envelope(tmp_path, ledger):
    cfg = ServerConfig(data_dir=tmp_path / "nats")  # sync_interval "always": the embedded default
    assert cfg.sync_interval == "always"
    server = await asyncio.to_thread(EmbeddedServer(cfg).start)
    url = server.url
    acks, calls = AckLog(), []
    driver_bus = acks.wrap(await Bus.connect(url, name="driver"))
    rec_bus = await Bus.connect(url, name="recorder")
    runtimes = await agents(url, 2, calls, acks)
    recorder = await Recorder(rec_bus, ledger).start()
    driver = await Driver(driver_bus, CONVERSATIONS, STEPS).start()
    load = asyncio.create_task(driver.run(timeout=120))
    try:
        for fraction in (0.3, 0.6):
            await eventually(lambda: driver.done_steps >= fraction * CONVERSATIONS * STEPS or load.done(), 60, "load progress")
            assert not load.done(), "the load finished before the kill"
            before = len(acks.acked)
            server.kill()  # SIGKILL: no flush, no goodbye
            server.config.port, server.owned = server.port or 0, False
            await asyncio.to_thread(server.start)
            assert server.url == url
            await eventually(lambda: len(acks.acked) > before + 50, 30, "acks after the restart")
        await load
        assert driver.finished == {f"load-{i}" for i in range(CONVERSATIONS)}
        info = await driver_bus.js.stream_info(driver_bus.subjects.stream)
        # Late answers (redeliveries after the kills) can still be acknowledged while we check: take what has
        # been acknowledged so far, wait until the mirror holds every one of those sequences, check exactly that.
        acked = dict(acks.acked)
        await recorder.wait_for(max(info.state.last_seq, *acked.values()), timeout=30)
        stored = {row[0]: row[1] for row in ledger.db.execute("select id, position from events")}
        lost = [i for i in acked if i not in stored]
        assert not lost, f"{len(lost)} acknowledged envelopes are not in the ledger, e.g. {lost[:3]}"
        moved = [i for i, seq in acked.items() if stored[i] != seq]
        assert not moved, "an acknowledged envelope is stored at another sequence than its PubAck said"
        assert not recorder.gaps
        positions = [p for (p,) in ledger.db.execute("select position from events union select position from rejects order by 1")]
        # Late answers (redeliveries after the kills) may still arrive: contiguous from 1, at least to `last_seq`.
        assert positions == list(range(1, positions[-1] + 1)) and positions[-1] >= info.state.last_seq
        assert len(set(calls)) == CONVERSATIONS * STEPS
        print(f"\n{len(acks.acked)} acknowledged envelopes, all in the ledger; {len(calls) - len(set(calls))} "
              f"handler re-runs after the kills; longest pause between acks {acks.longest_gap:.2f}s")
    finally:
        load.cancel()
        for rt in runtimes:
            await rt.stop(drain=False)
            await rt.bus.close()
        await recorder.stop()
        for b in (driver_bus, rec_bus):
            await b.close()
        await asyncio.to_thread(server.stop)
