"""Trace and span ids derived from envelope ids, so a ledger alone can rebuild a live trace exactly.

A conversation's trace id is its conversation id (a UUIDv7 is 128 bits, like a trace id), and every
span's id is a hash of the envelope it stands for. Live spans get these ids through `PresetIdGenerator`;
`ledgerbus trace export` computes the same ones from the ledger, so both views of a conversation share
ids and Jaeger merges rather than duplicates them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache

from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import SpanContext, TraceFlags

_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")

# Span roles: a part of the key, so the send span and the process span of one envelope never collide.
CONVERSATION = "conversation"
SEND = "send"
PROCESS = "process"


@lru_cache(maxsize=4096)  # every envelope of a conversation asks again: publishes are the hot path
def trace_id_for(conversation_id: str) -> int:
    """The trace id of a conversation: its UUID itself when it is one, else a hash of it."""
    h = conversation_id.replace("-", "").lower()
    if _HEX32.match(h) and int(h, 16):
        return int(h, 16)
    return int.from_bytes(hashlib.blake2b(f"trace:{conversation_id}".encode(), digest_size=16).digest(), "big") or 1


def span_id_for(role: str, key: str) -> int:
    """A 64-bit span id for `role` of the envelope (or conversation) `key`; never 0 (0 is invalid)."""
    return int.from_bytes(hashlib.blake2b(f"{role}:{key}".encode(), digest_size=8).digest(), "big") or 1


def format_traceparent(ctx: SpanContext) -> str:
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags & 0xFF:02x}"


def parse_traceparent(value: str | None, *, remote: bool = True) -> SpanContext | None:
    """A W3C traceparent as a SpanContext, or None when absent or malformed (never an exception:
    a bad traceparent from a foreign agent must not stop its message being handled)."""
    if not value:
        return None
    m = _TRACEPARENT.match(value) or _TRACEPARENT.match(value.strip().lower())  # the usual form first
    if m is None or m.group(1) == "ff" or (m.group(1) == "00" and m.group(5)):
        return None
    trace_id, span_id = int(m.group(2), 16), int(m.group(3), 16)
    if not trace_id or not span_id:
        return None
    return SpanContext(trace_id, span_id, is_remote=remote, trace_flags=TraceFlags(int(m.group(4), 16)))


_preset: ContextVar[tuple[int | None, int] | None] = ContextVar("ledgerbus_preset_ids", default=None)


class PresetIdGenerator(IdGenerator):
    """Random ids, unless `preset()` names the ids of the span being started right now.

    The SDK asks for ids synchronously inside `start_span`, so a context variable set around that
    one call reaches exactly that span (and not, say, a concurrent task's).
    """

    def __init__(self) -> None:
        self._random = RandomIdGenerator()

    def generate_span_id(self) -> int:
        p = _preset.get()
        return p[1] if p is not None else self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        p = _preset.get()
        return p[0] if p is not None and p[0] else self._random.generate_trace_id()


@contextmanager
def preset(trace_id: int | None, span_id: int) -> Iterator[None]:
    """Give the span started inside this block these ids (the trace id only if it starts a trace)."""
    token = _preset.set((trace_id, span_id))
    try:
        yield
    finally:
        _preset.reset(token)
