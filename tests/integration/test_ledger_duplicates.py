"""The mirror holds every stream sequence: a message repeating an envelope id already stored (a raw
re-publish with another Nats-Msg-Id, or none) is kept at its sequence, marked as a duplicate, and folded once."""

from __future__ import annotations

import json

from ledger_attacks import ledgerbus, rows

from ledgerbus.eventstore.fold import fold
from ledgerbus.eventstore.recorder import Recorder
from ledgerbus.eventstore.sqlite import SQLiteEventStore
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import answer, new_request


async def test_a_republished_envelope_is_kept_at_its_sequence_as_a_duplicate(bus, tmp_path):
    path = tmp_path / "ledger.db"
    req = new_request(sender="client", recipient="worker", capability="work.do", payload={"i": 1})
    first = await bus.publish(req)
    data = bus.codec.encode(req)
    # The same bytes again: JetStream's window deduplicates by Nats-Msg-Id, and these carry another id, or none
    # (what a message past the window looks like to the recorder).
    again = await bus.publish_raw(bus.subjects.of(req), data, {"Nats-Msg-Id": req.id + "-again"})
    bare = await bus.publish_raw(bus.subjects.of(req), data)
    ack = answer(req, Action.ACK, sender="worker")
    last = await bus.publish(ack)
    assert not again.duplicate and not bare.duplicate and len({first.seq, again.seq, bare.seq, last.seq}) == 4

    store = SQLiteEventStore(path)
    try:
        async with Recorder(bus, store) as rec:
            await rec.catch_up()
        assert [(ev.position, ev.envelope.id) for ev in store.read()] == [(first.seq, req.id), (last.seq, ack.id)]
        assert store.duplicates() == [(again.seq, req.id, first.seq), (bare.seq, req.id, first.seq)]
        assert store.checkpoint() == last.seq and store.gaps() == []
        state = fold(store.read())
        assert state.events == 2 and state.tasks[req.task_id].attempts == 1
    finally:
        store.close()
    # The bytes are the stream's, at the stream's sequence.
    assert rows(path, "SELECT position, data FROM duplicates ORDER BY position") == [(again.seq, data), (bare.seq, data)]

    res = ledgerbus("replay", path, "-c", req.conversation_id, "--json")
    assert res.returncode == 0, res.stderr
    (replayed,) = json.loads(res.stdout)
    assert len(replayed["events"]) == 2 and replayed["state"]["tasks"][req.task_id]["attempts"] == 1, replayed["state"]

    res = ledgerbus("verify", path, "--json")
    assert res.returncode == 0, (res.stdout, res.stderr)
    report = json.loads(res.stdout)
    assert report["ok"] and report["gaps"] == [] and report["issues"] == []
    assert report["duplicates"] == [{"position": again.seq, "id": req.id, "firstPosition": first.seq},
                                    {"position": bare.seq, "id": req.id, "firstPosition": first.seq}]

    # An export carries them along: imported, the copy holds the same sequences and exports the same bytes.
    dump, copy = tmp_path / "dump.jsonl", tmp_path / "copy.db"
    assert ledgerbus("export", path, "-o", dump).returncode == 0
    assert ledgerbus("import", dump, "--into", copy).returncode == 0
    assert rows(copy, "SELECT position, data FROM duplicates ORDER BY position") == [(again.seq, data), (bare.seq, data)]
    res = ledgerbus("export", copy)
    assert res.returncode == 0 and res.stdout.encode() == dump.read_bytes()
