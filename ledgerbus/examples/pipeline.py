"""The content pipeline: research fanned out over sub-topics in parallel, then writing, then editing.

Research steps are optional (best effort): the writer works with whatever notes arrived. When the
editor fails the draft is returned unedited; when the writer fails the notes are — degraded, not lost.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any

import msgspec

from ledgerbus.examples.payloads import Article, ArticleRequest
from ledgerbus.examples.topics import subtopics
from ledgerbus.errors import ConfigError
from ledgerbus.orchestrator.aggregate import BestEffort, FanIn
from ledgerbus.orchestrator.outcome import ConversationOutcome
from ledgerbus.orchestrator.plan import Plan, PlanContext, Step
from ledgerbus.schemas.capability import CapabilityRegistry, registry as default_registry

CAPABILITY = "content.article"


def register(registry: CapabilityRegistry = default_registry) -> None:
    registry.register(CAPABILITY, ArticleRequest, ConversationOutcome, description="A researched, written and edited article.")


def _notes(ctx: PlanContext) -> list[dict[str, Any]]:
    seen: set[str] = set()
    notes: list[dict[str, Any]] = []
    for step_id in sorted(k for k in ctx.results if k.startswith("research-")):
        for note in ctx.results[step_id].get("notes", []):
            if note["text"] not in seen:
                seen.add(note["text"])
                notes.append(note)
    return notes


class ContentPipeline:
    """Decomposer for `content.article`."""

    capabilities = frozenset({CAPABILITY})

    def __init__(self, *, notes_per_subtopic: int = 4, target_words: int = 300, max_words: int = 600,
                 research_fan_in: FanIn | None = None) -> None:
        """`research_fan_in` decides when writing may start: BestEffort (default: wait for every angle,
        write from whatever arrived), Quorum(k) (start at k angles), AnyOf() or All()."""
        self.research_fan_in = research_fan_in or BestEffort()
        self.notes_per_subtopic = notes_per_subtopic
        self.target_words = target_words
        self.max_words = max_words

    def plan(self, capability: str, request: Mapping[str, Any]) -> Plan:
        if capability != CAPABILITY:
            raise ConfigError(f"the content pipeline plans {CAPABILITY!r}, not {capability!r}")
        req = msgspec.convert(request, ArticleRequest)
        research = [
            Step(f"research-{i}", "research.search", {"topic": sub, "maxNotes": self.notes_per_subtopic}, optional=True)
            for i, sub in enumerate(subtopics(req.topic, req.subtopics))
        ]

        def draft_input(ctx: PlanContext) -> dict[str, Any]:
            notes = _notes(ctx)
            if not notes:
                raise ConfigError("no research step produced notes, so there is nothing to write from")
            return {"topic": req.topic, "notes": notes, "targetWords": self.target_words}

        def edit_input(ctx: PlanContext) -> dict[str, Any]:
            return {"draft": ctx.results["write"], "maxWords": self.max_words}

        return Plan([
            *research,
            Step("write", "writing.draft", draft_input, depends_on=tuple(s.id for s in research),
                 fan_in=self.research_fan_in),
            Step("edit", "editor.edit", edit_input, depends_on=("write",)),
        ])

    def assemble(self, capability: str, ctx: PlanContext, failed: Set[str]) -> dict[str, Any]:
        topic = str(ctx.request["topic"])
        edited, draft = ctx.results.get("edit"), ctx.results.get("write")
        if edited is not None and draft is not None:
            art = Article(topic=topic, title=edited["title"], body=edited["body"], word_count=edited["wordCount"],
                          sources=draft["sources"], changes=edited["changes"])
        elif draft is not None:
            art = Article(topic=topic, title=draft["title"], body=draft["body"], word_count=draft["wordCount"],
                          sources=draft["sources"], changes=["not edited: the editor step failed"])
        else:
            notes = _notes(ctx)
            body = "\n\n".join(f"- {n['text']} ({n['source']})" for n in notes)
            art = Article(topic=topic, title=topic, body=body, word_count=len(body.split()),
                          sources=sorted({n["source"] for n in notes}), changes=["not written: only research notes are available"])
        return msgspec.to_builtins(art)
