"""The content pipeline every system runs, as plain functions on JSON-shaped dicts.

The same handlers as ledgerbus's trivial pipeline agents (bench/agents_trivial.py), with the same
payloads (camelCase, the example agents' shapes), so every system moves the same bytes: three
research queries in parallel, a draft from their notes, an edit of the draft, the assembled article.
Each peer calls these from its own durable unit (an activity, a step, a node, a `ctx.run`).
"""

from __future__ import annotations

from typing import Any

from ledgerbus.examples.topics import subtopics

Json = dict[str, Any]

SUBTOPICS = 3
NOTES_PER_SUBTOPIC = 4  # ContentPipeline's default maxNotes
TARGET_WORDS = 300
MAX_WORDS = 600


def topic(round_: int, i: int) -> str:
    return f"topic {round_}-{i}"


def research_queries(topic: str) -> list[Json]:
    return [{"topic": sub, "maxNotes": NOTES_PER_SUBTOPIC} for sub in subtopics(topic, SUBTOPICS)]


def research(query: Json) -> Json:
    t = query["topic"]
    return {"topic": t, "notes": [{"text": f"a fact about {t}", "source": "doc-1", "score": 1.0}]}


def draft_request(topic: str, results: list[Json]) -> Json:
    """The writing step's input from the research results, in research order (ContentPipeline's `_notes`)."""
    seen: set[str] = set()
    notes = []
    for r in results:
        for n in r["notes"]:
            if n["text"] not in seen:
                seen.add(n["text"])
                notes.append(n)
    return {"topic": topic, "notes": notes, "targetWords": TARGET_WORDS}


def draft(req: Json) -> Json:
    body = " ".join(n["text"] for n in req["notes"])
    return {"title": req["topic"], "body": body, "sources": sorted({n["source"] for n in req["notes"]}),
            "wordCount": len(body.split())}


def edit_request(d: Json) -> Json:
    return {"draft": d, "maxWords": MAX_WORDS}


def edit(req: Json) -> Json:
    d = req["draft"]
    return {"title": d["title"], "body": d["body"], "wordCount": d["wordCount"], "changes": []}


def article(topic: str, d: Json, edited: Json) -> Json:
    """What the conversation returns (ContentPipeline.assemble's Article)."""
    return {"topic": topic, "title": edited["title"], "body": edited["body"], "wordCount": edited["wordCount"],
            "sources": d["sources"], "changes": edited["changes"]}


def run_inline(topic: str) -> Json:
    """The pipeline with no system around it: the result every conversation must return."""
    d = draft(draft_request(topic, [research(q) for q in research_queries(topic)]))
    return article(topic, d, edit(edit_request(d)))
