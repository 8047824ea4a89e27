"""The `writing` agent: turns research notes into a draft article."""

from __future__ import annotations

from ledgerbus.agents.context import Context
from ledgerbus.examples.drafting import write_draft
from ledgerbus.examples.payloads import Draft, DraftRequest
from ledgerbus.agents.sdk import Agent
from ledgerbus.examples import own

agent = Agent("writing", description="Writes a draft article from research notes (deterministic, offline).",
              registry=own.registry)


@agent.capability("writing.draft")
async def draft(req: DraftRequest, ctx: Context) -> Draft:
    """A draft with a title, paragraphs built from the notes, and their sources."""
    return write_draft(req)
