"""The recorder keeps mirroring when its durable consumer goes away under it."""

from __future__ import annotations

from ledgerbus.eventstore.recorder import Recorder
from ledgerbus.schemas.envelope import new_request


def _request(i: int):
    return new_request(sender="client", recipient="worker", capability="work.do", payload={"i": i})


async def test_a_deleted_consumer_is_recreated_and_the_mirror_catches_up(bus, ledger):
    first = [_request(i) for i in range(3)]
    async with Recorder(bus, ledger, fetch_timeout=0.2) as rec:
        for env in first:
            await bus.publish(env)
        await rec.catch_up(holding=[e.id for e in first])
        # An operator's `nats consumer rm`, or a re-creation lost in a leader election.
        await bus.js.delete_consumer(bus.subjects.stream, rec.durable)
        later = [_request(i) for i in range(3, 8)]
        for env in later:
            await bus.publish(env)
        await rec.catch_up(timeout=15, holding=[e.id for e in later])
    assert [e.envelope.id for e in ledger.read()] == [e.id for e in first + later]
    assert ledger.checkpoint() == len(first + later)
    assert ledger.verify().ok
