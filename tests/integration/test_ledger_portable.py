"""Portable ledgers: JSONL export/import is lossless, and the live JetStream ledger reads like the SQLite one."""

from __future__ import annotations

import io

from ledger_world import record_articles

from ledgerbus.bus.connection import Bus
from ledgerbus.eventstore.base import EventFilter
from ledgerbus.eventstore.jetstream import JetStreamLedger
from ledgerbus.eventstore.jsonl import export_store, export_stream, import_into_store, import_into_stream
from ledgerbus.eventstore.sqlite import SQLiteEventStore


def export_bytes(store: SQLiteEventStore) -> bytes:
    buf = io.BytesIO()
    export_store(store, buf)
    return buf.getvalue()


async def test_export_import_export_is_identical(bus, ledger, tmp_path):
    await record_articles(bus, ledger, ["raft consensus", "bloom filters"])
    first = export_bytes(ledger)
    assert first.count(b"\n") == ledger.count() + 1  # header + one line per event

    copy = SQLiteEventStore(tmp_path / "copy.db")
    report = import_into_store(copy, io.BytesIO(first))
    assert report.events == report.new == ledger.count() and not report.hash_mismatches
    assert export_bytes(copy) == first
    assert copy.verify().ok
    assert [e.raw for e in copy.read()] == [e.raw for e in ledger.read()]
    copy.close()


async def test_import_reports_an_edited_export(bus, ledger, tmp_path):
    await record_articles(bus, ledger, ["bloom filters"])
    lines = export_bytes(ledger).splitlines(keepends=True)
    lines[5] = lines[5].replace(b'"attempt":1', b'"attempt":2', 1)
    assert b'"attempt":2' in lines[5]
    copy = SQLiteEventStore(tmp_path / "edited.db")
    report = import_into_store(copy, lines)
    position = int(lines[5].split(b",")[0].split(b":")[1])
    assert report.hash_mismatches == [position]
    copy.close()


async def test_jetstream_read_matches_sqlite(bus, ledger):
    results = await record_articles(bus, ledger, ["raft consensus", "bloom filters"])
    source = JetStreamLedger(bus)
    live = [ev async for ev in source.read()]
    assert [(e.position, e.raw) for e in live] == [(e.position, e.raw) for e in ledger.read()]
    cid = results[1].conversation_id
    for flt in (EventFilter(conversation_ids=(cid,)),
                EventFilter(actions=("REQUEST", "ERROR")),
                EventFilter(agents=("writing",)),
                EventFilter(capabilities=("research.search",), after=5, until=40),
                EventFilter(conversation_ids=(cid,), actions=("RESPONSE",))):
        got = [e.position async for e in source.read(flt, batch=7)]
        assert got == [e.position for e in ledger.read(flt)], flt
        assert got or flt.actions == ("REQUEST", "ERROR")
    # The stream export carries the same chain the recorder stored.
    buf = io.BytesIO()
    await export_stream(source.batches(), buf)
    assert buf.getvalue() == export_bytes(ledger)


async def test_import_into_a_jetstream_ledger(bus, ledger, nats_server):
    await record_articles(bus, ledger, ["raft consensus"])
    exported = export_bytes(ledger)
    other = await Bus.connect(nats_server.url, prefix="imported", name="import")
    try:
        report = await import_into_stream(other, io.BytesIO(exported).readlines())
        assert report.events == report.new == ledger.count()
        again = await import_into_stream(other, io.BytesIO(exported).readlines())
        assert again.new == 0  # the envelope ids deduplicate a second import
        buf = io.BytesIO()
        await export_stream(JetStreamLedger(other).batches(), buf)
        # A fresh stream numbers from 1 like the original, so even the positions survive.
        assert buf.getvalue() == exported
    finally:
        await other.close()


def test_import_refuses_bad_lines_with_their_line_number(tmp_path):
    import pytest

    from ledgerbus.errors import StoreError

    store = SQLiteEventStore(tmp_path / "bad.db")
    header = b'{"ledgerbus":"ledger","version":1}\n'
    cases = {
        b"not json at all\n": "line 2: not a ledger line",
        b'{"position":1,"envelope":{"id":"x"}}\n': "line 2 (position 1): INVALID_MESSAGE",
        b'{"position":1,"envelope":{"deep":' + b"[" * 100 + b"]" * 100 + b"}}\n": "PAYLOAD_TOO_DEEP",
        b'{"position":0,"envelope":{}}\n': "position must be",
    }
    for line, message in cases.items():
        with pytest.raises(StoreError, match=message.replace("(", r"\(").replace(")", r"\)")):
            import_into_store(store, [header, line])
    with pytest.raises(StoreError, match="missing the ledgerbus header"):
        import_into_store(store, [b'{"position":1,"envelope":{}}\n'])
    assert store.count() == 0
    store.close()


def test_an_envelope_stored_with_whitespace_around_it_round_trips_byte_for_byte(tmp_path):
    import msgspec

    from ledgerbus.eventstore.base import StoredEvent
    from ledgerbus.schemas.codec import Codec
    from ledgerbus.schemas.codes import Action
    from ledgerbus.schemas.envelope import answer, new_request

    src = SQLiteEventStore(tmp_path / "src.db")
    root = new_request(sender="client", recipient="worker", capability="work.do", payload={"i": 1})
    conv = [root, answer(root, Action.ACK), answer(root, Action.RESPONSE, payload={"out": 1})]
    padded = b" \t" + msgspec.json.encode(conv[0]) + b"\t "  # another client's bytes: valid JSON, accepted
    Codec().decode(padded)
    src.append([StoredEvent(1, conv[0], padded)] + [StoredEvent(i, e) for i, e in enumerate(conv[1:], 2)])
    first = export_bytes(src)
    dst = SQLiteEventStore(tmp_path / "dst.db")
    report = import_into_store(dst, first.splitlines(keepends=True))
    assert report.hash_mismatches == []
    assert bytes(dst.db.conn.execute("SELECT envelope FROM events WHERE position = 1").fetchone()[0]) == padded
    assert export_bytes(dst) == first
    assert dst.verify().ok and dst.heads() == src.heads()
    src.close()
    dst.close()


def test_a_ledger_from_before_hash_chains_exports_read_only_as_it_would_once_migrated(tmp_path):
    import sqlite3

    from ledgerbus.schemas.codes import Action
    from ledgerbus.schemas.envelope import answer, new_request

    path = tmp_path / "old.db"
    store = SQLiteEventStore(path)
    for i in range(2):
        root = new_request(sender="client", recipient="worker", capability="work.do", payload={"i": i})
        store.append_envelopes([root, answer(root, Action.ACK), answer(root, Action.RESPONSE, payload={"out": i})])
    store.close()
    conn = sqlite3.connect(path)
    with conn:  # back to the layout of a release before hash chains and compaction
        conn.execute("DROP VIEW envelopes")
        conn.execute("ALTER TABLE events DROP COLUMN hash")
        conn.execute("ALTER TABLE events DROP COLUMN prev_hash")
        for table in ("chain_heads", "compacted", "snapshots"):
            conn.execute(f"DROP TABLE {table}")
    conn.close()

    readonly = SQLiteEventStore(path, readonly=True)  # `ledgerbus export` never migrates the file it reads
    exported = export_bytes(readonly)
    readonly.close()
    assert b'"prevHash":"",' not in exported
    copy = SQLiteEventStore(tmp_path / "copy.db")
    report = import_into_store(copy, exported.splitlines(keepends=True))
    assert report.new == 6 and report.hash_mismatches == []
    assert copy.verify().ok
    migrated = SQLiteEventStore(path)  # opened writable: chained in place
    assert export_bytes(migrated) == exported == export_bytes(copy)
    migrated.close()
    copy.close()
