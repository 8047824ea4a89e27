"""`ledgerbus deadletters` on a ledger without dead letters, and its clear errors."""

from __future__ import annotations

import asyncio
import subprocess
import sys


async def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "ledgerbus.cli.main", "deadletters", *args],
                                   capture_output=True, text=True, timeout=60)


async def test_list_and_redrive_errors(nats_server, bus):
    url = ["--url", nats_server.url]
    empty = await cli("list", *url)
    assert empty.returncode == 0 and "no dead letters" in empty.stdout
    unknown = await cli("redrive", "deadletter-999", *url)
    assert unknown.returncode == 1
    assert "no dead letter deadletter-999 in the ledger" in unknown.stderr and "Traceback" not in unknown.stderr
    nothing = await cli("redrive", *url)
    assert nothing.returncode == 2 and "--all" in nothing.stderr
    none_pending = await cli("redrive", "--all", *url)
    assert none_pending.returncode == 0 and "nothing to re-drive" in none_pending.stdout
    down = await cli("list", "--url", "nats://127.0.0.1:1")
    assert down.returncode == 2 and "no NATS server reachable at nats://127.0.0.1:1" in down.stderr
