"""Replay attacks: an envelope re-sent after JetStream's duplicate window is not executed twice."""

from __future__ import annotations

import time

import msgspec

from ledgerbus.bus.streams import LedgerConfig
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import new_request

from badinput import World


async def test_replay_after_the_duplicate_window_is_not_executed_twice(bus, ledger):
    await bus.ensure_ledger(LedgerConfig(duplicate_window=0.5))
    async with World(bus, ledger) as w:
        req = new_request(sender="tester", recipient="adder", capability="math.add", payload={"a": 20, "b": 22})
        first = await bus.publish(req)
        await w.wait_answers(2)  # ACK, RESPONSE
        # Inside the window JetStream drops the copy itself; wait for the window to pass by watching it do so.
        deadline = time.monotonic() + 10
        while True:
            ack = await bus.publish(req)
            if not ack.duplicate:
                break
            assert ack.seq == first.seq and time.monotonic() < deadline
        assert ack.seq > first.seq  # the replay is in the stream: JetStream no longer recognises it
        # The same request under a fresh id (defeats id-based dedup), same idempotency key.
        forged = msgspec.structs.replace(req, id="replayed-" + req.id[-12:])
        await bus.publish(forged)
        answers = await w.wait_answers(6)
        finals = [e for e in answers if e.action is Action.RESPONSE]
        assert len(finals) == 3 and {e.payload["sum"] for e in finals} == {42}
        assert len(w.calls) == 1, "the handler ran again for a replayed request"
        await w.accounted()
        # The mirror recognises the replay by its id: stored once; the fresh-id copy is a distinct event.
        assert ledger.db.execute("select count(*) from events where id=?", (req.id,)).fetchone()[0] == 1
