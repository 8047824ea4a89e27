"""A 3-node JetStream cluster on loopback with the ledger at R3, under a steady publish load:
kill the stream leader, kill a follower, SIGSTOP the leader, lose 2 of 3.

No acknowledged envelope is lost, none is stored twice, the replicas agree after recovery, nothing is
acknowledged while only one node of three is up, and the longest gap in acknowledgements is reported.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import nats
import pytest
from nats.js import api

from ledgerbus.bus.streams import LedgerConfig
from ledgerbus.bus.subjects import Subjects
from ledgerbus.schemas.codec import Codec
from ledgerbus.schemas.envelope import new_request

from cluster import Cluster
from faulthelp import eventually

SUBJECTS = Subjects("lb")
codec = Codec()


class Publisher:
    """Publishes envelopes one after another; a failed publish is retried with the same Nats-Msg-Id."""

    def __init__(self, js) -> None:
        self.js = js
        self.acked: dict[str, tuple[int, float]] = {}  # id -> (stream seq, when)
        self.attempts = 0
        self.stop = asyncio.Event()

    async def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            env = new_request(sender="loader", recipient="sink", capability="sink.put", payload={"n": n},
                              conversation_id=f"c{n % 7}")
            data = codec.encode(env)
            while not self.stop.is_set():
                self.attempts += 1
                try:
                    ack = await self.js.publish(SUBJECTS.of(env), data, timeout=0.5, headers={"Nats-Msg-Id": env.id})
                except Exception:
                    await asyncio.sleep(0.05)  # no quorum or reconnecting: pace the retries
                    continue
                self.acked[env.id] = (ack.seq, time.monotonic())
                break

    def acks_since(self, t: float) -> int:
        return sum(1 for _, at in self.acked.values() if at > t)

    def longest_gap(self, since: float = 0.0) -> float:
        """Longest wait between two acks from the last ack before `since` on (the fault's outage)."""
        all_times = sorted(at for _, at in self.acked.values())
        before = [x for x in all_times if x < since]
        times = before[-1:] + [x for x in all_times if x >= since]
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)


async def leader(js) -> str:
    async def elected() -> str:
        info = await js.stream_info(SUBJECTS.stream)
        if info.cluster is None or not info.cluster.leader:
            raise LookupError("no stream leader yet")
        return info.cluster.leader

    return await retry(elected, "the stream leader")


async def retry(call, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await call()
        except Exception:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: the cluster's JetStream API did not answer within {timeout}s") from None
            await asyncio.sleep(0.2)


async def wait_acks(pub: Publisher, n: int, what: str, timeout: float = 30) -> None:
    start = time.monotonic()
    await eventually(lambda: pub.acks_since(start) >= n, timeout, what)


@pytest.mark.slow
async def test_r3_cluster_survives_leader_follower_pause_and_quorum_loss(tmp_path, record_testsuite_property):
    cluster = await asyncio.to_thread(Cluster.start, tmp_path)
    nc = await nats.connect(servers=cluster.urls, ping_interval=1, max_outstanding_pings=2,
                            reconnect_time_wait=0.1, max_reconnect_attempts=-1, connect_timeout=2)
    js = nc.jetstream(timeout=2)
    report: dict[str, float] = {}
    try:
        cfg = LedgerConfig(replicas=3).stream_config(SUBJECTS)
        deadline = time.monotonic() + 30
        while True:  # the meta leader is elected a moment after the routes connect
            try:
                await js.add_stream(cfg)
                break
            except Exception:
                assert time.monotonic() < deadline, "the cluster did not accept an R3 stream"
                await asyncio.sleep(0.2)
        pub = Publisher(js)
        load = asyncio.create_task(pub.run())
        await wait_acks(pub, 200, "acks before any fault")

        # 1. kill the stream leader; a new one is elected and acks resume
        old = cluster.node(await leader(js))
        t = time.monotonic()
        await asyncio.to_thread(old.kill)
        await wait_acks(pub, 200, "acks after the leader was killed")
        report["leader kill"] = pub.longest_gap(t)
        assert await leader(js) != old.name
        await asyncio.to_thread(old.start)

        # 2. kill a follower: the leader keeps its quorum
        lead = await leader(js)
        follower = next(n for n in cluster.nodes if n.name != lead)
        t = time.monotonic()
        await asyncio.to_thread(follower.kill)
        await wait_acks(pub, 200, "acks with a follower down")
        report["follower kill"] = pub.longest_gap(t)
        await asyncio.to_thread(follower.start)

        # 3. SIGSTOP the leader: alive but silent; the others elect a leader, then it comes back as a follower
        paused = cluster.node(await leader(js))
        t = time.monotonic()
        paused.pause()
        await wait_acks(pub, 200, "acks with the leader paused")
        report["leader SIGSTOP"] = pub.longest_gap(t)
        paused.resume()

        # 4. lose 2 of 3: nothing may be acknowledged without a quorum
        await wait_acks(pub, 100, "acks before losing the quorum")
        down = cluster.nodes[:2]
        for n in down:
            await asyncio.to_thread(n.kill)
        t_down = time.monotonic()
        attempts = pub.attempts
        await eventually(lambda: pub.attempts > attempts + 20, 30, "publish attempts without a quorum")
        # An ack already in flight at the kill may land; after a grace period none may.
        late = [i for i, (_, at) in pub.acked.items() if at > t_down + 1.0]
        assert not late, f"{len(late)} publishes were acknowledged by a single node of three"
        for n in down:
            await asyncio.to_thread(n.start)
        t = time.monotonic()
        await wait_acks(pub, 200, "acks after the quorum came back", timeout=60)
        report["quorum loss (downtime included)"] = pub.longest_gap(t_down)

        pub.stop.set()
        await load
        info = await retry(lambda: js.stream_info(SUBJECTS.stream), "stream info")
        last = info.state.last_seq

        # every acknowledged envelope is in the stream, once, at the sequence its ack said
        # The JetStream API may still be settling after the quorum came back (a meta leader election): retry.
        sub = await retry(lambda: js.subscribe(SUBJECTS.all(), stream=SUBJECTS.stream, ordered_consumer=True,
                                               deliver_policy=api.DeliverPolicy.ALL), "an ordered consumer")
        ids: Counter[str] = Counter()
        at: dict[str, int] = {}
        for _ in range(info.state.messages):
            msg = await sub.next_msg(timeout=5)
            env = codec.decode(msg.data)
            ids[env.id] += 1
            at[env.id] = msg.metadata.sequence.stream
        await sub.unsubscribe()
        assert not [i for i in pub.acked if i not in ids], "an acknowledged envelope was lost"
        assert all(c == 1 for c in ids.values()), "an envelope was stored twice"
        assert all(at[i] == seq for i, (seq, _) in pub.acked.items())

        # all three replicas agree once the recovered nodes have caught up
        def agree() -> bool:
            states = [n.stream_state(SUBJECTS.stream) for n in cluster.nodes]
            return all(s is not None and (s["last_seq"], s["messages"], s["bytes"]) ==
                       (last, info.state.messages, info.state.bytes) for s in states)

        await eventually(lambda: agree(), 30, "the replicas to agree", every=0.2)
        for fault, gap in report.items():
            record_testsuite_property(f"longest ack gap after {fault} (s)", round(gap, 2))  # in the JUnit report
        print("\nlongest gap between acknowledgements: " + ", ".join(f"{k} {v:.2f}s" for k, v in report.items()))
        print(f"{len(pub.acked)} acknowledged envelopes, {info.state.messages} stored, replicas agree at {last}")
    finally:
        await nc.close()
        await asyncio.to_thread(cluster.stop)
