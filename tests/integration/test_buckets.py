"""The shared KV buckets (results, directory) refuse rollup headers, so no writer can purge others' keys."""

from __future__ import annotations

import pytest

from ledgerbus.agents.directory import Directory, InstanceInfo
from ledgerbus.agents.results import Recorded, ResultStore, slot


async def test_buckets_made_by_ledgerbus_refuse_rollups_and_withdraw_by_delete(bus):
    results, directory = ResultStore(bus), Directory(bus)
    await results.put(slot("beta", "alpha", "k1"), Recorded({"x": 1}, "r1", "t1", 1))
    info = InstanceInfo(agent="beta", instance="beta-1", capabilities=[], started_at=1, seen_at=1)
    await directory.announce(info)
    for kv in (await results._bucket(), await directory.bucket()):
        si = await bus.js.stream_info(kv.stream)
        assert si.config.allow_rollup_hdrs is False
        with pytest.raises(Exception, match="rollup"):
            await bus.js.publish(f"{kv.prefix}alpha.x", b"{}", headers={"Nats-Rollup": "all"})
    assert await results.get("beta", "alpha", "k1") is not None
    assert [i.instance for i in await directory.instances()] == ["beta-1"]
    await directory.withdraw("beta", "beta-1")  # a delete marker: kv.purge would be a rollup, refused
    assert await directory.instances() == []


async def test_an_existing_bucket_that_allows_rollups_is_closed(bus):
    store = ResultStore(bus)
    kv = await store._bucket()
    si = await bus.js.stream_info(kv.stream)
    await bus.js.update_stream(si.config.evolve(allow_rollup_hdrs=True))  # as nats-py creates buckets
    reopened = ResultStore(bus)
    await reopened._bucket()
    assert (await bus.js.stream_info(kv.stream)).config.allow_rollup_hdrs is False
