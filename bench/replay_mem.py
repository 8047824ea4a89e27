"""`python -m bench.replay_mem LEDGER.db`: replay a ledger in a fresh process, print its peak memory growth.

A fresh process so the peak (ru_maxrss) belongs to this replay alone; growth is measured from the
peak reached after imports and opening the store, just before reading.
"""

from __future__ import annotations

import json
import resource
import sys


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def main(path: str) -> None:
    from bench.ledger import Replayer
    from ledgerbus.eventstore.sqlite import SQLiteEventStore

    store = SQLiteEventStore(path, readonly=True)
    before = peak_rss()
    rep = Replayer().feed_all(store.read())
    after = peak_rss()
    store.close()
    print(json.dumps({"events": rep.events, "finished": rep.finished, "peak_growth": after - before, "peak": after}))


if __name__ == "__main__":
    main(sys.argv[1])
