"""The recorder reports JetStream sequences that vanished before it saw them, and keeps the report."""

from __future__ import annotations

from ledgerbus.eventstore.recorder import Recorder
from ledgerbus.schemas.envelope import new_request


async def test_sequences_removed_from_the_stream_are_recorded_as_gaps(bus, ledger):
    envs = [new_request(sender="client", recipient="worker", capability="work.do", payload={"i": i}) for i in range(6)]
    for env in envs:
        await bus.publish(env)
    # Retention (or an operator) removed two messages before the recorder read them.
    await bus.js.delete_msg(bus.subjects.stream, 3)
    await bus.js.delete_msg(bus.subjects.stream, 4)
    async with Recorder(bus, ledger) as rec:
        await rec.catch_up()
    assert rec.gaps == [(3, 4)]
    assert ledger.gaps() == [(3, 4)]
    assert [e.position for e in ledger.read()] == [1, 2, 5, 6]
    assert ledger.verify().ok  # each conversation's own chain is whole: the gap is the stream's, reported apart
