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


async def test_a_redriven_request_counts_in_the_fold(bus):
    """Re-sent as its own sender: a retry of someone else's task by a stranger would be ignored by the fold."""
    from ledgerbus.eventstore.fold import TaskStatus, fold
    from ledgerbus.schemas.envelope import new_request
    from ledgerbus.security import deadletters as dl

    req = new_request(sender="orchestrator", recipient="beta", capability="beta.shout", payload={"text": "x"})
    ack = await bus.publish(req)
    letter = dl.Letter(dl.dead_letter(req, stream_seq=ack.seq, deliveries=3, consumer="agent-beta", sender="beta"),
                       stream_seq=ack.seq + 1, request_seq=ack.seq)
    again = await dl.redrive(bus, letter)
    assert again.sender == "orchestrator" and again.attempt == 2
    state = fold([req, letter.error, again])
    t = state.tasks[req.task_id]
    assert (t.status, t.attempt, t.request_id) == (TaskStatus.SENT, 2, again.id) and state.ignored == []
