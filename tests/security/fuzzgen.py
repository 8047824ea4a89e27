"""Hypothesis strategies for fuzzing: generated envelopes (valid, mutated) and raw byte strings."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

tokens = st.from_regex(r"\A[A-Za-z0-9_-]{1,20}\Z")
addresses = st.sampled_from(["adder", "tester", "orchestrator"]) | st.from_regex(r"\A[a-z0-9_-]{1,12}\Z")
scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=10)
FIELDS = ["id", "conversationId", "taskId", "sender", "recipient", "action", "capability", "payload", "attempt",
          "deadline", "idempotencyKey", "timestamp", "error", "replyTo", "causationId", "schemaVersion"]


@st.composite
def envelopes(draw: st.DrawFn, recipient: str = "adder", capabilities: tuple[str, ...] = ("math.add", "math.add", "math.sub", "x", "Bad Cap")) -> dict[str, Any]:
    payload = draw(st.fixed_dictionaries({"a": st.integers(-5, 5), "b": st.integers(-5, 5)}) | st.dictionaries(st.text(max_size=5), json_values, max_size=3))
    return {
        "id": str(draw(st.uuids())), "conversationId": draw(tokens), "taskId": draw(tokens),
        "sender": draw(addresses), "recipient": draw(st.just(recipient) | addresses),
        "action": draw(st.sampled_from(["REQUEST"] * 4 + ["ACK", "RESPONSE", "ERROR", "request", "Nope"])),
        "capability": draw(st.sampled_from(capabilities)),
        "payload": payload, "attempt": draw(st.integers(-1, 5)),
        "idempotencyKey": draw(st.none() | st.text(min_size=0, max_size=10)),
    }


@st.composite
def mutated(draw: st.DrawFn, **kw: Any) -> dict[str, Any]:
    env = draw(envelopes(**kw))
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


def messages(**kw: Any) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=300),
        envelopes(**kw).map(encode),
        mutated(**kw).map(encode),
        json_values.map(encode),
        st.text(alphabet='{}[]":,\\ abc01', max_size=80).map(str.encode),
    )


def generate(n: int, **kw: Any) -> list[bytes]:
    """`n` messages drawn by hypothesis (derandomized: the same list every run)."""
    out: list[bytes] = []

    @settings(max_examples=n, database=None, derandomize=True, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(messages(**kw))
    def collect(m: bytes) -> None:
        out.append(m)

    collect()
    return out
