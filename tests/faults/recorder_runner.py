"""The recorder in its own process, so a fault test can kill -9 it mid-batch.

    python recorder_runner.py --url nats://… --db ledger.db [--batch 200]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ledgerbus.bus.connection import Bus  # noqa: E402
from ledgerbus.eventstore.recorder import Recorder  # noqa: E402
from ledgerbus.eventstore.sqlite import SQLiteEventStore  # noqa: E402


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--db", required=True)
    p.add_argument("--batch", type=int, default=200)
    args = p.parse_args()
    bus = await Bus.connect(args.url, name="recorder-runner")
    await Recorder(bus, SQLiteEventStore(args.db), batch=args.batch).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
