"""verify finds what an attacker does to a recorded SQLite ledger with the sqlite3 module, names the
position, exits 1, and never writes to the file it checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ledger_attacks import edit, ledgerbus, record_greetings, rows

from ledgerbus.eventstore.sqlite import SQLiteEventStore


@pytest.fixture
async def recorded(bus, tmp_path) -> tuple[Path, list[str]]:
    """Three conversations (REQUEST, ACK, RESPONSE each) mirrored by the real recorder; their ids in order."""
    path = tmp_path / "ledger.db"
    store = SQLiteEventStore(path)
    try:
        answers = await record_greetings(bus, store, ["ada", "bob", "cy"])
    finally:
        store.close()
    return path, [a.conversation_id for a in answers]


def positions(path: Path, cid: str) -> list[int]:
    return [p for (p,) in rows(path, "SELECT position FROM events WHERE conversation_id = ? ORDER BY position", (cid,))]


def verify(path: Path, code: int = 1) -> list[tuple[str, int]]:
    """`ledgerbus verify FILE --json` as a subprocess, checked to leave the file as it was; its findings."""
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    res = ledgerbus("verify", path, "--json")
    assert res.returncode == code, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime, "verify wrote to the ledger"
    report = json.loads(res.stdout)
    assert report["ok"] is (code == 0)
    return [(i["kind"], i["position"]) for i in report["issues"]]


def test_an_untouched_recording_is_intact(recorded):
    path, _ = recorded
    assert verify(path, code=0) == []


def test_dropped_hash_columns_are_reported_and_never_chained_again(recorded):
    path, cids = recorded
    edit(path, ("DROP VIEW envelopes", ()), ("ALTER TABLE events DROP COLUMN hash", ()),
         ("ALTER TABLE events DROP COLUMN prev_hash", ()))
    found = verify(path)
    assert sorted(found) == sorted(("UNCHAINED", positions(path, cid)[0]) for cid in cids)
    assert "hash" not in {c for (_, c, *_) in rows(path, "PRAGMA table_info(events)")}


def test_a_truncated_conversation_whose_head_was_given_the_surviving_hash(recorded):
    path, cids = recorded
    kept, cut = positions(path, cids[1])[:-1], positions(path, cids[1])[-1]
    (surviving,) = rows(path, "SELECT hash FROM events WHERE position = ?", (kept[-1],))[0]
    edit(path, ("DELETE FROM events WHERE position = ?", (cut,)),
         ("UPDATE chain_heads SET hash = ? WHERE conversation_id = ?", (surviving, cids[1])))
    assert ("MISSING", cut) in verify(path)


@pytest.mark.parametrize("column, value", [("sender", "orchestrator"), ("action", "ERROR"), ("timestamp", 0),
                                           ("recipient", "nobody"), ("capability", "admin.wipe")])
def test_a_column_outside_the_hash_edited(recorded, column, value):
    path, cids = recorded
    p = positions(path, cids[0])[1]
    edit(path, (f"UPDATE events SET {column} = ? WHERE position = ?", (value, p)))
    assert verify(path) == [("COLUMN", p)]


def test_a_whole_conversation_deleted_with_its_head_row(recorded):
    path, cids = recorded
    gone = positions(path, cids[2])
    edit(path, ("DELETE FROM events WHERE conversation_id = ?", (cids[2],)),
         ("DELETE FROM chain_heads WHERE conversation_id = ?", (cids[2],)))
    found = verify(path)
    # Each run of deleted sequences is a finding at its first one (the conversations interleave).
    assert found and {k for k, _ in found} == {"MISSING"} and {p for _, p in found} <= set(gone)
    assert gone[0] in {p for _, p in found}
    res = ledgerbus("verify", path)
    assert f"MISSING position {gone[0]} (the ledger)" in res.stdout


def test_an_envelope_written_back_as_text(recorded):
    path, cids = recorded
    p = positions(path, cids[0])[0]
    edit(path, ("UPDATE events SET envelope = CAST(envelope AS TEXT) WHERE position = ?", (p,)))
    assert verify(path) == [("ALTERED", p)]


def test_a_damaged_event_is_a_finding_too(recorded):
    path, cids = recorded
    p = positions(path, cids[0])[0]
    (raw,) = rows(path, "SELECT envelope FROM events WHERE position = ?", (p,))[0]
    # What an older release recorded for a REQUEST with a repeated key, its chain link made to fit.
    forged = b'{"sender":"Bad Sender",' + bytes(raw)[1:]
    from ledgerbus.eventstore.integrity import chain_hash

    (prev,) = rows(path, "SELECT prev_hash FROM events WHERE position = ?", (p,))[0]
    edit(path, ("UPDATE events SET envelope = ?, hash = ? WHERE position = ?", (forged, chain_hash(prev, forged), p)),
         ("UPDATE events SET prev_hash = ? WHERE prev_hash = ?", (chain_hash(prev, forged), chain_hash(prev, bytes(raw)))))
    assert ("DAMAGED", p) in verify(path)
