"""Dead letters in security mode: agents may not read the ledger, so a client user (the orchestrator) runs
the watcher; its DEAD_LETTER is signed by it and recorded as an event, and it is listed for re-drive."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

from ledgerbus.bus.streams import ConsumerSettings, consumer_name
from ledgerbus.eventstore.recorder import Recorder
from ledgerbus.eventstore.sqlite import SQLiteEventStore
from ledgerbus.schemas.envelope import new_request
from ledgerbus.security import deadletters as dl
from ledgerbus.security.deadletters import DeadLetterWatcher
from ledgerbus.security.securebus import provision

from sechelp import eventually


async def test_orchestrator_dead_letters_a_request_beta_never_acknowledged(secured, tmp_path):
    # beta's consumer gives up after 2 deliveries, 0.3 s apart
    await provision(secured.admin, secured.deployment,
                    consumers={"beta": ConsumerSettings(ack_wait=0.3, max_deliver=2)})
    beta, orch, rec_bus = [await secured.connect(n) for n in ("beta", "orchestrator", "recorder")]
    store = SQLiteEventStore(tmp_path / "ledger.db")
    try:
        watcher = await DeadLetterWatcher(orch, sender="orchestrator").start()
        async with Recorder(rec_bus, store) as rec:
            req = new_request(sender="orchestrator", recipient="beta", capability="beta.shout", payload={"text": "x"})
            await orch.publish(req)
            # beta takes it and dies without acknowledging, twice (a crashing instance)
            sub = await beta.js.pull_subscribe_bind(consumer_name("beta"), stream=beta.subjects.stream)
            taken = 0
            while not watcher.published:
                try:
                    taken += len(await sub.fetch(1, timeout=0.5))
                except Exception:  # nothing to take right now (waiting for the redelivery, or gone)
                    pass
                assert taken <= 2, "delivered beyond MaxDeliver"
            (letter,) = watcher.published
            assert letter.error.code == "DEAD_LETTER" and letter.causation_id == req.id
            assert letter.sender == "orchestrator" and letter.recipient == "orchestrator"
            await eventually(lambda: rec.recorded_seq >= 2, what="the letter in the mirror")
            await rec.catch_up()
        assert [e.id for e in store.envelopes() if e.action.value == "ERROR"] == [letter.id]
        assert store.db.execute("select count(*) from rejects").fetchone()[0] == 0  # signed by its sender
        (found,) = await dl.find(orch)
        assert found.id == letter.id and found.redriven_by is None
        # The CLI, as the orchestrator user of the deployment
        listed = await asyncio.to_thread(subprocess.run, [
            sys.executable, "-m", "ledgerbus.cli.main", "deadletters", "list", "--json", "--url", secured.server.url,
            "--deployment", str(secured.dir / "secrets"), "--user", "orchestrator"], capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        assert [r["id"] for r in json.loads(listed.stdout)] == [letter.id]
        refused = await asyncio.to_thread(subprocess.run, [
            sys.executable, "-m", "ledgerbus.cli.main", "deadletters", "list", "--url", secured.server.url],
            capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2 and "authorization failed" in refused.stderr  # no user: the server says no
        assert not beta.violations and not orch.violations
        await watcher.stop()
    finally:
        store.close()
        for b in (beta, orch, rec_bus):
            await b.close()
