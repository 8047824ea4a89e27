"""Issue 21: what keeps Agents and Integrity quick on a big ledger — counts added up a stretch at a time,
and a verify that runs in the background (in a process of its own past a size) — gives the same answers."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from ledgerbus.ui import index as index_module
from ledgerbus.ui import verifier as verifier_module
from ledgerbus.ui.index import LedgerIndex
from ledgerbus.ui.other_pages import agents, integrity
from ledgerbus.ui.verifier import Status, Verifier

from uihelp import Runs


def _by_sql(path: Path) -> list[tuple[str, int, int, int, int]]:
    """The counts as one GROUP BY over the whole file computes them."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as c:
        names = {r[0] for r in c.execute("SELECT sender FROM events UNION SELECT recipient FROM events")}
        one = lambda sql, n: c.execute(sql, (n,)).fetchone()[0]  # noqa: E731
        return sorted((n, one("SELECT COUNT(*) FROM events WHERE recipient = ? AND action = 'REQUEST'", n),
                       one("SELECT COUNT(*) FROM events WHERE sender = ? AND action = 'ACK'", n),
                       one("SELECT COUNT(*) FROM events WHERE sender = ? AND action = 'RESPONSE'", n),
                       one("SELECT COUNT(*) FROM events WHERE sender = ? AND action = 'ERROR'", n)) for n in names)


def test_agent_counts_added_a_chunk_at_a_time_match_one_count_of_everything(runs: Runs, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "ledger.db"
    src = sqlite3.connect(f"file:{runs.world.ledger_path}?mode=ro", uri=True)
    dst = sqlite3.connect(copy)
    src.backup(dst)
    src.close()
    dst.close()
    monkeypatch.setattr(index_module, "CHUNK", 7)
    ix = LedgerIndex(copy)
    try:
        rows, upto, last = ix.agents(steps=1)
        assert upto == min(7, last) < last  # one chunk: partial, and it says so
        assert "Counting: up to position 7" in agents(rows, upto, last)
        while upto < last:
            rows, upto, last = ix.agents(steps=1)
        assert [r for r in rows if any(r[1:])] == [r for r in _by_sql(copy) if any(r[1:])]
    finally:
        ix.close()


def test_a_big_ledger_is_verified_in_a_process_of_its_own_with_the_same_verdict(runs: Runs, tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "altered.db"
    src = sqlite3.connect(f"file:{runs.world.ledger_path}?mode=ro", uri=True)
    dst = sqlite3.connect(copy)
    src.backup(dst)
    src.close()
    with dst:
        dst.execute("UPDATE events SET envelope = CAST(replace(CAST(envelope AS TEXT), 'silent', 'SILENT') AS BLOB)"
                    " WHERE position = (SELECT MIN(position) FROM events WHERE CAST(envelope AS TEXT) LIKE '%silent%')")
    dst.close()
    last = sqlite3.connect(copy).execute("SELECT MAX(position) FROM events").fetchone()[0]

    async def both() -> tuple[Status, Status]:
        out = []
        for limit in (10**9, 0):  # in a thread, then in a process
            monkeypatch.setattr(verifier_module, "IN_PROCESS_MAX", limit)
            v = Verifier(copy)
            job = v.ensure(last)
            assert job is not None and v.status().running_since is not None
            await job
            assert v.ensure(last) is None  # the verdict covers the ledger: no second run
            out.append(v.status())
        return out[0], out[1]

    in_thread, in_process = asyncio.run(both())
    assert in_process.error is None and in_process.last is not None and in_thread.last is not None
    assert in_process.last.report == in_thread.last.report and not in_process.last.report.ok
    page = integrity(in_process, last, time.time())
    assert "FINDINGS" in page and f"up to position {last:,}" in page


def test_the_integrity_page_says_a_verify_is_under_way_and_looks_again() -> None:
    now = time.time()
    page = integrity(Status(None, now - 3, 1_000_000, None), 1_000_000, now)
    assert 'id="verifying"' in page and "1,000,000" in page and "for 3 s so far" in page
    assert 'http-equiv="refresh"' in page and 'id="verdict"' not in page
