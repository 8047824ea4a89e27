"""Wire payloads of the built-in example agents (research, writing, editor) and their pipeline.

Field names travel in camelCase; unknown fields are rejected so a typo in a request fails loudly
instead of being silently ignored. Docstrings and `Meta` descriptions end up in the JSON Schema.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

#: A topic is a short phrase; sub-topics derived from it must fit the same limit.
MAX_TOPIC_LENGTH = 200
MAX_NOTES = 20
MAX_SUBTOPICS = 8
MIN_WORDS = 50
MAX_WORDS = 5000

# `\S` (re.search) rejects blank strings that `min_length` alone would let through.
Topic = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TOPIC_LENGTH, pattern=r"\S",
                                    description="what to write about, a short phrase")]
NonBlank = Annotated[str, msgspec.Meta(min_length=1, pattern=r"\S")]
Score = Annotated[float, msgspec.Meta(ge=0.0, description="relevance; higher is better")]
WordCount = Annotated[int, msgspec.Meta(ge=0, description="number of whitespace-separated words")]
WordTarget = Annotated[int, msgspec.Meta(ge=MIN_WORDS, le=MAX_WORDS)]


class ResearchQuery(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """Ask the research agent for notes on a topic from its bundled corpus."""

    topic: Topic
    max_notes: Annotated[int, msgspec.Meta(ge=1, le=MAX_NOTES)] = 5


class Note(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """One sentence of evidence with the id of the corpus document it came from."""

    text: NonBlank
    source: Annotated[str, msgspec.Meta(min_length=1, max_length=200,
                                        description="id of the corpus document")]
    score: Score


class ResearchNotes(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """The research agent's answer: notes on the topic, best first."""

    topic: Topic
    notes: list[Note]


class DraftRequest(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """Ask the writing agent to turn notes into a draft article of about target_words words."""

    topic: Topic
    notes: list[Note]
    target_words: WordTarget = 300


class Draft(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """A draft article: paragraphs separated by blank lines, and the sources it used."""

    title: NonBlank
    body: str
    sources: list[str]
    word_count: WordCount


class EditRequest(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """Ask the editor agent to check and improve a draft, keeping it under max_words words."""

    draft: Draft
    max_words: WordTarget = 600


class EditedArticle(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """The editor's result: the improved text and a readable list of what it changed."""

    title: str
    body: str
    word_count: WordCount
    changes: list[str]


class ArticleRequest(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """Ask the pipeline for a finished article on a topic, researched from several angles."""

    topic: Topic
    subtopics: Annotated[int, msgspec.Meta(ge=1, le=MAX_SUBTOPICS,
                                           description="how many angles to research in parallel")] = 3


class Article(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """The pipeline's final output: an edited article with its sources and the editor's changes."""

    topic: str
    title: str
    body: str
    word_count: WordCount
    sources: list[str]
    changes: list[str]
