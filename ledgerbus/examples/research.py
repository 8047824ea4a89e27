"""The `research` agent: searches the bundled corpus for a topic and returns notes with sources."""

from __future__ import annotations

from ledgerbus.agents.context import Context
from ledgerbus.examples.corpus import search as search_corpus
from ledgerbus.examples.payloads import ResearchNotes, ResearchQuery
from ledgerbus.agents.sdk import Agent
from ledgerbus.examples import own

agent = Agent("research", description="Finds notes with sources on a topic in a bundled corpus (offline).",
              registry=own.registry)


@agent.capability("research.search")
async def search(query: ResearchQuery, ctx: Context) -> ResearchNotes:
    """Notes on a topic, best first, each with the document it came from."""
    return ResearchNotes(topic=query.topic, notes=search_corpus(query.topic, query.max_notes))
