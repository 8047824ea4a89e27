"""Fuzz: a few thousand generated envelopes and raw byte strings against a live agent.

The agent never stops serving, every message gets exactly one final answer (RESPONSE or ERROR) in the
ledger, and every stream message is in the SQLite mirror as an event or a reject.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from badinput import World

N = 2000

tokens = st.from_regex(r"\A[A-Za-z0-9_-]{1,20}\Z")
addresses = st.sampled_from(["adder", "tester", "orchestrator"]) | st.from_regex(r"\A[a-z0-9_-]{1,12}\Z")
scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=10)
FIELDS = ["id", "conversationId", "taskId", "sender", "recipient", "action", "capability", "payload", "attempt",
          "deadline", "idempotencyKey", "timestamp", "error", "replyTo", "causationId", "schemaVersion"]


@st.composite
def envelopes(draw: st.DrawFn) -> dict[str, Any]:
    payload = draw(st.fixed_dictionaries({"a": st.integers(-5, 5), "b": st.integers(-5, 5)}) | st.dictionaries(st.text(max_size=5), json_values, max_size=3))
    return {
        "id": str(draw(st.uuids())), "conversationId": draw(tokens), "taskId": draw(tokens),
        "sender": draw(addresses), "recipient": draw(st.just("adder") | addresses),
        "action": draw(st.sampled_from(["REQUEST"] * 4 + ["ACK", "RESPONSE", "ERROR", "request", "Nope"])),
        "capability": draw(st.sampled_from(["math.add", "math.add", "math.sub", "x", "Bad Cap"])),
        "payload": payload, "attempt": draw(st.integers(-1, 5)),
        "idempotencyKey": draw(st.none() | st.text(min_size=0, max_size=10)),
    }


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    env = draw(envelopes())
    how = draw(st.sampled_from(["drop", "replace", "extra"]))
    field = draw(st.sampled_from(FIELDS))
    if how == "drop":
        env.pop(field, None)
    elif how == "replace":
        env[field] = draw(json_values)
    else:
        env[draw(st.text(max_size=8))] = draw(json_values)
    return env


def encode(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


messages = st.one_of(
    st.binary(max_size=300),
    envelopes().map(encode),
    mutated().map(encode),
    json_values.map(encode),
    st.text(alphabet='{}[]":,\\ abc01', max_size=80).map(str.encode),
)


def generate(n: int) -> list[bytes]:
    out: list[bytes] = []

    @settings(max_examples=n, database=None, derandomize=True, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(messages)
    def collect(m: bytes) -> None:
        out.append(m)

    collect()
    return out


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
            "select position, json_extract(error, '$.code') from events where sender='adder' and action='ERROR'")
            if pos not in sent}
        assert codes <= {"INVALID_MESSAGE", "UNKNOWN_CAPABILITY", "DEADLINE_EXCEEDED", "PAYLOAD_TOO_DEEP"}, codes
