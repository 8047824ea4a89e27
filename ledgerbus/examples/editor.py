"""The `editor` agent: checks and improves a draft and reports what it changed."""

from __future__ import annotations

from ledgerbus.agents.context import Context
from ledgerbus.examples.editing import edit as edit_draft
from ledgerbus.examples.payloads import EditedArticle, EditRequest
from ledgerbus.agents.sdk import Agent
from ledgerbus.examples import own

agent = Agent("editor", description="Fixes structure, repeated words and length of a draft, listing each change.",
              registry=own.registry)


@agent.capability("editor.edit")
async def edit(req: EditRequest, ctx: Context) -> EditedArticle:
    """The edited article and the list of changes made."""
    return edit_draft(req)
