"""One bad event never disables the tools: a REQUEST with a repeated key is refused at the door, and a
damaged event in a recorded ledger (an older release's, or written by hand) is reported by every ledger
command, which goes on with the rest."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from ledger_attacks import edit, ledgerbus, record_greetings, rows

from ledgerbus.eventstore.sqlite import SQLiteEventStore
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import new_request


async def test_a_request_with_a_repeated_key_is_answered_invalid_and_kept_as_a_reject(bus, tmp_path):
    store = SQLiteEventStore(tmp_path / "ledger.db")
    answers: list = []

    async def on(msg):
        answers.append(bus.codec.decode(msg.data))

    await bus.subscribe_inbox("raw-tester", on)
    req = new_request(sender="raw-tester", recipient="greeter", capability="greeter.greet", payload={"name": "x"})
    # The pattern-free decoder keeps the last sender, the strict one refused the first: before, the agent
    # answered it and the strict readers of the ledger then refused the whole file.
    data = b'{"sender":"Bad Sender",' + bus.codec.encode(req)[1:]
    try:
        from ledgerbus.agents.runtime import AgentRuntime
        from ledgerbus.eventstore.recorder import Recorder
        from ledger_attacks import greeter

        agent, _ = greeter()
        async with AgentRuntime(agent, bus, announce=False), Recorder(bus, store) as rec:
            ack = await bus.publish_raw(bus.subjects.of(req), data, {"Nats-Msg-Id": req.id})
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while not answers:
                assert loop.time() < deadline, "no answer to the REQUEST"
                await asyncio.sleep(0.01)
            await rec.catch_up(holding=[answers[0].id])
        (err,) = answers
        assert err.action is Action.ERROR and err.causation_id == req.id
        assert err.error is not None and err.error.code == "INVALID_MESSAGE"
        assert "duplicate key 'sender'" in err.error.message
        (reject,) = store.rejects()
        assert reject.position == ack.seq and reject.data == data and reject.code == "INVALID_MESSAGE"
        assert [e.envelope.id for e in store.read()] == [err.id]
    finally:
        store.close()


def damage(path: Path, position: int) -> None:
    """What an older release stored for a REQUEST with a repeated key, put at `position`."""
    (raw,) = rows(path, "SELECT envelope FROM events WHERE position = ?", (position,))[0]
    edit(path, ("UPDATE events SET envelope = ? WHERE position = ?", (b'{"sender":"Bad Sender",' + bytes(raw)[1:],
                                                                     position)))


def junk(path: Path) -> int:
    """A row written by hand, whose envelope is not JSON at all; returns its position."""
    (last,) = rows(path, "SELECT MAX(position) FROM events")[0]
    edit(path, ("INSERT INTO events (position, id, conversation_id, sender, recipient, action, capability, timestamp,"
                " envelope) VALUES (?, 'junk', 'conv-junk', 'x', 'y', 'REQUEST', 'a.b', 0, ?)", (last + 10, b"{not json")))
    return last + 10


async def test_every_ledger_command_reports_a_damaged_event_and_goes_on(bus, tmp_path):
    path = tmp_path / "ledger.db"
    store = SQLiteEventStore(path)
    try:
        answers = await record_greetings(bus, store, ["ada", "bob", "cy"])
    finally:
        store.close()
    conversations = {a.conversation_id for a in answers}
    damaged_cid = answers[0].conversation_id
    (bad,) = rows(path, "SELECT position FROM events WHERE id = ?", (answers[0].id,))[0]
    damage(path, bad)
    hand = junk(path)

    def reported(res, repeated_key: bool = True, code: int = 0) -> None:
        assert res.returncode == code, (res.stdout, res.stderr)
        assert "Traceback" not in res.stderr
        assert (f"position {bad} (conversation {damaged_cid})" in res.stderr) is repeated_key, res.stderr
        assert f"position {hand} (conversation conv-junk)" in res.stderr, res.stderr

    res = ledgerbus("conversations", "--ledger", path, "--json")
    reported(res)
    assert {r["conversationId"] for r in json.loads(res.stdout)} == conversations
    status = {r["conversationId"]: r["status"] for r in json.loads(res.stdout)}
    assert status.pop(damaged_cid) == "RUNNING" and set(status.values()) == {"DONE"}  # its RESPONSE is skipped

    res = ledgerbus("stalls", "--ledger", path, "--stall-after", "0.001", "--json")
    reported(res, code=1)  # it found a stalled task, as it should
    assert [s["conversationId"] for s in json.loads(res.stdout)] == [damaged_cid]  # acked, then nothing

    res = ledgerbus("trace", "show", path, "--json")
    reported(res)
    assert {t["conversationId"] for t in json.loads(res.stdout)} == conversations

    # Replay trusts what the recorder checked (its speed is the point): the repeated key reads as its last
    # value there, and `verify` is what flags it; bytes that are not an envelope it reports and skips.
    res = ledgerbus("replay", path, "--summary")
    reported(res, repeated_key=False)

    res = ledgerbus("compact", path, "--json")
    reported(res)
    report = json.loads(res.stdout)
    assert report["conversations"] == 2 and sorted(report["keptDamaged"]) == sorted([damaged_cid, "conv-junk"])
    # The damaged conversation keeps every event, the damaged one included, for `verify` to look at.
    assert rows(path, "SELECT COUNT(*) FROM events WHERE conversation_id = ?", (damaged_cid,)) == [(3,)]
