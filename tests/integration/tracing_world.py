"""Shared by the tracing tests: an agent that fails once then succeeds, and a traced conversation."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import msgspec
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import ledgerbus.tracing as tracing

from ledgerbus.agents.runtime import AgentRuntime
from ledgerbus.agents.sdk import Agent, AgentError
from ledgerbus.bus.connection import Bus
from ledgerbus.eventstore.recorder import Recorder
from ledgerbus.eventstore.sqlite import SQLiteEventStore
from ledgerbus.orchestrator.backoff import Backoff, RetryPolicy
from ledgerbus.orchestrator.engine import Orchestrator
from ledgerbus.orchestrator.inflight import ConversationResult
from ledgerbus.orchestrator.policy import PolicySet, TaskPolicy
from ledgerbus.schemas.capability import CapabilityRegistry
from ledgerbus.schemas.envelope import Envelope


class Job(msgspec.Struct):
    text: str


class Done(msgspec.Struct):
    text: str
    attempt: int


def flaky_agent(reg: CapabilityRegistry) -> Agent:
    """`flaky.work`: attempt 1 fails with a retryable FLAKY error, later attempts succeed."""
    agent = Agent("flaky", registry=reg)

    @agent.capability("flaky.work")
    async def work(job: Job, ctx) -> Done:  # type: ignore[no-untyped-def]
        if ctx.attempt == 1:
            raise AgentError("FLAKY", "the first attempt always fails", retryable=True)
        return Done(text=job.text.upper(), attempt=ctx.attempt)

    return agent


FAST = PolicySet(default=TaskPolicy(receipt_timeout=5, stall_after=5, timeout=10,
                                    retry=RetryPolicy(max_attempts=3, backoff=Backoff(initial=0.01, cap=0.02))))


@dataclass
class Traced:
    result: ConversationResult
    envelopes: list[Envelope]


async def run_flaky_conversation(bus: Bus, store: SQLiteEventStore) -> Traced:
    reg = CapabilityRegistry()
    agent = flaky_agent(reg)
    async with Recorder(bus, store) as rec, AgentRuntime(agent, bus, announce=False):
        orch = await Orchestrator(bus, policies=FAST, registry=reg, use_directory=False).start()
        try:
            result = await orch.run("flaky.work", {"text": "hello"})
        finally:
            await orch.stop()
        await rec.catch_up()
    return Traced(result, list(store.envelopes(result.conversation_id)))


def by_message(spans: Sequence[ReadableSpan]) -> dict[str, ReadableSpan]:
    return {str(s.attributes["messaging.message.id"]): s for s in spans
            if s.attributes and s.attributes.get("messaging.operation.type") == "send"}


@pytest.fixture
def memory_spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process, every finished span kept in memory (import this fixture to use it)."""
    exp = InMemorySpanExporter()
    tracing.configure(exporter=exp, batch=False)
    yield exp
    tracing.shutdown()
