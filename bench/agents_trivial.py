"""Agents whose handlers do (almost) nothing, so a benchmark measures ledgerbus, not the work.

Payloads are still typed and validated on the way in and out, as in a real agent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any

import msgspec

from ledgerbus.examples.payloads import (
    Draft,
    DraftRequest,
    EditedArticle,
    EditRequest,
    Note,
    ResearchNotes,
    ResearchQuery,
)
from ledgerbus.agents.sdk import Agent
from ledgerbus.schemas.capability import CapabilityRegistry


class EchoMsg(msgspec.Struct):
    text: str
    n: int


#: The payload every step benchmark sends (about the size of a small real request).
ECHO_PAYLOAD = {"text": "the quick brown fox jumps over the lazy dog " * 3, "n": 1}


def echo_type(i: int) -> str:
    return f"echo{i}"


def echo_capability(i: int) -> str:
    return f"echo{i}.say"


@cache
def echo_registry() -> CapabilityRegistry:
    return CapabilityRegistry()


def echo_agents(types: int) -> list[Agent]:
    agents = []
    for i in range(types):
        agent = Agent(echo_type(i), registry=echo_registry())

        @agent.capability(echo_capability(i))
        async def say(inp: EchoMsg) -> EchoMsg:
            return inp

        agents.append(agent)
    return agents


def pipeline_agents() -> list[Agent]:
    """research / writing / editor with the example agents' payload types and trivial bodies."""
    reg = CapabilityRegistry()
    research, writing, editor = Agent("research", registry=reg), Agent("writing", registry=reg), Agent("editor", registry=reg)

    @research.capability("research.search")
    async def search(q: ResearchQuery) -> ResearchNotes:
        return ResearchNotes(topic=q.topic, notes=[Note(text=f"a fact about {q.topic}", source="doc-1", score=1.0)])

    @writing.capability("writing.draft")
    async def draft(r: DraftRequest) -> Draft:
        body = " ".join(n.text for n in r.notes)
        return Draft(title=r.topic, body=body, sources=sorted({n.source for n in r.notes}), word_count=len(body.split()))

    @editor.capability("editor.edit")
    async def edit(r: EditRequest) -> EditedArticle:
        d = r.draft
        return EditedArticle(title=d.title, body=d.body, word_count=d.word_count, changes=[])

    return [research, writing, editor]


def echo_call(req: Any) -> Callable[[], Awaitable[Any]]:
    """One echo step through `req` (a Requester), as every step benchmark sends it."""
    async def call() -> Any:
        return await req.request(echo_type(0), echo_capability(0), ECHO_PAYLOAD, timeout=30)

    return call
