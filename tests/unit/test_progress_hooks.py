"""Export and import report progress (the CLI draws it as a bar on a terminal only)."""

from __future__ import annotations

import io

from ledgerbus.eventstore.jsonl import export_store, import_into_store
from ledgerbus.eventstore.sqlite import SQLiteEventStore
from ledgerbus.schemas.envelope import new_request


def test_export_and_import_tick_with_totals(tmp_path):
    src = SQLiteEventStore(tmp_path / "a.db")
    src.append_envelopes([new_request(sender="t", recipient="r", capability="r.x", payload={"i": i})
                          for i in range(12_000)])
    ticks: list[tuple[int, int]] = []
    buf = io.BytesIO()
    n = export_store(src, buf, progress=lambda done, total: ticks.append((done, total)))
    assert n == 12_000 and ticks == [(5000, 12_000), (10_000, 12_000)]
    dst = SQLiteEventStore(tmp_path / "b.db")
    seen: list[tuple[int, int]] = []
    report = import_into_store(dst, buf.getvalue().splitlines(keepends=True), progress=lambda d, t: seen.append((d, t)),
                               total=12_000)
    assert report.new == 12_000 and seen == [(5000, 12_000), (10_000, 12_000)]
