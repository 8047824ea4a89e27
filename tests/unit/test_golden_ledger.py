"""The golden ledger, recorded by an earlier release (tests/fixtures/make_golden.py), replays to its stored state.

If this fails, a change made old ledgers read differently: fix the change, or — when that is the
intent — add an upcaster or regenerate the fixture and say why in the commit.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from ledgerbus.cli.render import state_json
from ledgerbus.eventstore.base import EventFilter
from ledgerbus.eventstore.fold import fold
from ledgerbus.eventstore.jsonl import export_store, import_into_store, read_lines
from ledgerbus.eventstore.sqlite import SQLiteEventStore
from ledgerbus.eventstore.upcast import Upcaster

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_golden_ledger_replays_to_its_stored_state(tmp_path):
    expected = json.loads((FIXTURES / "golden_state.json").read_text())
    store = SQLiteEventStore(tmp_path / "golden.db")
    report = import_into_store(store, read_lines(FIXTURES / "golden_ledger.jsonl"))
    assert report.events == report.new and not report.hash_mismatches
    assert store.verify().ok
    assert sorted(store.conversation_ids()) == sorted(expected)
    up = Upcaster()
    for cid, want in expected.items():
        state = fold(up.events(store.read(EventFilter(conversation_ids=(cid,)))))
        assert json.loads(json.dumps(state_json(state), default=str)) == want, cid
    assert not up.problems
    statuses = sorted(v["status"] for v in expected.values())
    assert statuses == ["DONE", "DONE", "FAILED"]
    # And it round-trips byte for byte.
    buf = io.BytesIO()
    export_store(store, buf)
    assert buf.getvalue() == (FIXTURES / "golden_ledger.jsonl").read_bytes()
    store.close()
