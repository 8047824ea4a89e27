"""`python -m bench.replay_mem LEDGER.db`: replay a ledger in a fresh process, print its peak memory growth.

A fresh process so the memory belongs to this replay alone; resident memory is sampled every 5,000
events and growth is the highest sample minus the one taken just before reading.
"""

from __future__ import annotations

import json
import sys


def rss() -> int:
    from bench.procs import rss_bytes

    return rss_bytes()


def main(path: str) -> None:
    from bench.ledger import Replayer
    from ledgerbus.eventstore.sqlite import SQLiteEventStore

    store = SQLiteEventStore(path, readonly=True)
    before = rss()
    high = before
    rep = Replayer()
    for ev in store.read(trusted=True):
        rep.feed(ev.envelope, ev.position)
        if rep.events % 5000 == 0:
            high = max(high, rss())
    high = max(high, rss())
    store.close()
    print(json.dumps({"events": rep.events, "finished": rep.finished, "peak_growth": high - before, "peak": high}))


if __name__ == "__main__":
    main(sys.argv[1])
