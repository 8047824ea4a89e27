"""Issue 21: the conversation list pages by position: newest first, every conversation once, filters kept."""

from __future__ import annotations

from pathlib import Path

import msgspec

from ledgerbus.eventstore.sqlite import SQLiteEventStore
from ledgerbus.ids import uuid7
from ledgerbus.ui.index import LedgerIndex
from ledgerbus.ui.summary import Filters

from uihelp import Runs


def _copies(runs: Runs, path: Path, n: int) -> list[str]:
    """n copies of the recorded conversations, interleaved two by two as concurrent ones are, with new ids."""
    # The longer one begins first and ends last: the order of starts differs from the order of last events.
    src = [runs.world.store.envelopes(c.conversation_id) for c in (runs.degraded, runs.done)]
    out = SQLiteEventStore(path)
    cids: list[str] = []
    try:
        for i in range(0, n, 2):
            pair = []
            for envs in src:
                cid, ids = uuid7(), {e.id: uuid7() for e in envs}
                cids.append(cid)
                pair.append([msgspec.structs.replace(e, id=ids[e.id], conversation_id=cid,
                                                     causation_id=ids.get(e.causation_id or "")) for e in envs])
            a, b = pair
            mixed = [x for ab in zip(a, b) for x in ab] + a[len(b):] + b[len(a):]
            out.append_envelopes(mixed)
    finally:
        out.close()
    return cids


def test_pages_walk_every_conversation_once_newest_first(runs: Runs, tmp_path: Path) -> None:
    cids = _copies(runs, tmp_path / "many.db", 130)
    index = LedgerIndex(tmp_path / "many.db")
    try:
        seen: list[str] = []
        before = None
        while True:
            page = index.page(Filters(), before=before, size=50)
            seen += [s.conversation_id for s in page.rows]
            if page.next_cursor is None:
                break
            before = page.next_cursor
        # The order they began in, newest first: a conversation interleaved with another is not repeated
        # on the next page, and none is skipped.
        firsts = {c: i for i, c in enumerate(cids)}
        assert seen == sorted(cids, key=lambda c: -firsts[c])
        degraded = index.page(Filters(status="DEGRADED"), size=50)
        assert len(degraded.rows) == 50 and {s.status for s in degraded.rows} == {"DEGRADED"}
        rest = index.page(Filters(status="DEGRADED"), before=degraded.next_cursor, size=50)
        assert len(rest.rows) == 15 and rest.next_cursor is None
        assert not {s.conversation_id for s in rest.rows} & {s.conversation_id for s in degraded.rows}
    finally:
        index.close()
