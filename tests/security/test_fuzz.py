"""Fuzz: a few thousand generated envelopes and raw byte strings against a live agent.

The agent never stops serving, every message gets exactly one final answer (RESPONSE or ERROR) in the
ledger, and every stream message is in the SQLite mirror as an event or a reject.
"""

from __future__ import annotations

import asyncio
import time

from badinput import World
from fuzzgen import generate

N = 2000


async def test_fuzzed_messages_never_crash_the_agent_and_all_are_answered_and_recorded(bus, ledger):
    data = await asyncio.to_thread(generate, N)
    assert len(data) >= N * 0.9
    async with World(bus, ledger) as w:
        sent = {await w.raw(raw, conv=f"fuzz-{i}") for i, raw in enumerate(data)}
        finals = 0
        deadline = time.monotonic() + 90
        while finals < len(data):
            assert time.monotonic() < deadline, f"{finals} of {len(data)} messages answered"
            await w.recorder.catch_up(timeout=30)
            # The agent's answers: final envelopes from `adder` that are not fuzz input claiming to be from it.
            finals = sum(1 for (pos,) in ledger.db.execute(
                "select position from events where sender='adder' and action in ('RESPONSE','ERROR')") if pos not in sent)
            await asyncio.sleep(0.1)
        assert finals == len(data), "a message was answered more than once"
        assert w.runtime._loop_task is not None and not w.runtime._loop_task.done()
        await w.still_serves()
        await w.accounted()
        codes = {code for pos, code in ledger.db.execute(
            "select position, json_extract(error, '$.code') from envelopes where sender='adder' and action='ERROR'")
            if pos not in sent}
        assert codes <= {"INVALID_MESSAGE", "UNKNOWN_CAPABILITY", "DEADLINE_EXCEEDED", "PAYLOAD_TOO_DEEP"}, codes
