"""Replaying a 200,000-event ledger holds memory for the open conversations only, not for the ledger.

The bound this test states: replaying the whole 200,000-event ledger (about 33,000 conversations,
50 open at any time) through `ledgerbus replay`'s sink grows the process's peak RSS by less than
32 MiB, and by less than twice (plus 4 MiB) what a 20,000-event ledger of the same shape needs —
ten times the events, not ten times the memory.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ledgerbus.eventstore.base import StoredEvent
from ledgerbus.eventstore.sqlite import SQLiteEventStore
from ledgerbus.schemas.codec import Codec
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import answer, new_request

BOUND = 32 * 2**20
OPEN = 50


def write_ledger(path: Path, size: int) -> int:
    enc = Codec().encode
    store = SQLiteEventStore(path)
    pos, batch = 0, []
    while pos < size:
        convs = []
        for _ in range(OPEN):
            root = new_request(sender="client", recipient="orchestrator", capability="echo.say", payload={"text": "hi"})
            step = new_request(sender="orchestrator", recipient="echo", capability="echo.say", payload={"text": "hi"},
                               conversation_id=root.conversation_id, task_id=root.conversation_id + "_say")
            convs.append([root, answer(root, Action.ACK), step, answer(step, Action.ACK),
                          answer(step, Action.RESPONSE, payload={"text": "HI"}),
                          answer(root, Action.RESPONSE, payload={"text": "HI"})])
        for i in range(6):
            for conv in convs:
                pos += 1
                batch.append(StoredEvent(pos, conv[i], enc(conv[i])))
        if len(batch) >= 5000:
            store.append(batch)
            batch = []
    store.append(batch)
    store.close()
    return pos


CHILD = """
import io, json, os, sys
from rich.console import Console
from ledgerbus.cli.ledger_view import ReplaySink
from ledgerbus.eventstore.sqlite import SQLiteEventStore

def rss():
    with open("/proc/self/statm") as f:  # resident pages, sampled after every batch
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

sink = ReplaySink(Console(file=open(os.devnull, "w")), upcast=True)
sink.out = io.StringIO()
store = SQLiteEventStore(sys.argv[1], readonly=True)
before = high = rss()
chunk = []
for ev in store.read(trusted=True):
    chunk.append(ev)
    if len(chunk) == 5000:
        sink.feed(chunk)
        chunk = []
        high = max(high, rss())
sink.feed(chunk)
sink.finish()
high = max(high, rss())
print(json.dumps({"growth": high - before, "count": sink.count, "by_status": sink.by_status,
                  "open": len(sink.open), "out": sink.out.getvalue()}))
"""


def replay_peak(path: Path) -> tuple[int, dict]:
    """Peak resident-memory growth of a whole-ledger replay, in a fresh process so it is this replay's alone."""
    out = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return int(res["growth"]), res


@pytest.mark.slow
def test_replay_memory_does_not_grow_with_the_ledger(tmp_path):
    small, large = tmp_path / "small.db", tmp_path / "large.db"
    write_ledger(small, 20_000)
    written = write_ledger(large, 200_000)
    peak_small, _ = replay_peak(small)
    peak_large, res = replay_peak(large)
    assert res["count"] == written >= 200_000 and res["by_status"] == {"DONE": written // 6}
    assert res["open"] == 0 and res["out"] == ""
    assert peak_large < BOUND, f"peak {peak_large / 2**20:.1f} MiB"
    assert peak_large < 2 * peak_small + 4 * 2**20, (peak_small, peak_large)
