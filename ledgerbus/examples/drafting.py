"""The writing agent's logic: arrange research notes into a draft article.

The drafter only ever arranges: every sentence of substance in the body is a note's text, and the
connecting sentences (intro, conclusion, sources) say nothing about the topic beyond its name.
"""

from __future__ import annotations

from ledgerbus.examples.payloads import Draft, DraftRequest, Note
from ledgerbus.examples.topics import normalize_topic, title_case

SENTENCES_PER_PARAGRAPH = 3
_TERMINAL = ".!?"


def count_words(text: str) -> int:
    """Whitespace-separated words: the one definition every example agent uses."""
    return len(text.split())


def write_draft(req: DraftRequest) -> Draft:
    """A draft of roughly `req.target_words` words built from `req.notes`, best notes first."""
    topic = normalize_topic(req.topic)
    notes = _unique_notes(req.notes)
    subject = topic.rstrip(".!?:;, ")  # "what is raft?" reads badly mid-sentence otherwise
    conclusion = (f"Taken together, these points give a first picture of {subject}. "
                  "The sources listed below go into more detail.")
    # The sources line is counted at its longest so the budget errs on the short side.
    overhead = count_words(_intro(subject, len(notes), _sources(notes))) + count_words(conclusion)
    overhead += count_words(_sources_line(_sources(notes)))
    chosen = _within_budget(notes, req.target_words - overhead)
    sources = _sources(chosen)
    paragraphs = [_intro(subject, len(chosen), sources)]
    paragraphs += _body_paragraphs(chosen) or ["No notes were available on this topic."]
    paragraphs += [conclusion, _sources_line(sources)]
    body = "\n\n".join(paragraphs)
    return Draft(title=title_case(topic), body=body, sources=sources, word_count=count_words(body))


def _clean(text: str) -> str:
    """Note text with whitespace collapsed and a full stop if it had no end punctuation."""
    text = " ".join(text.split())
    return text if text.endswith(tuple(_TERMINAL)) else text + "."


def _unique_notes(notes: list[Note]) -> list[Note]:
    """Notes best first (stable for equal scores), dropping repeats of the same text."""
    seen: set[str] = set()
    unique: list[Note] = []
    for note in sorted(notes, key=lambda n: -n.score):
        text = _clean(note.text)
        if text.lower() not in seen:
            seen.add(text.lower())
            unique.append(Note(text=text, source=note.source, score=note.score))
    return unique


def _within_budget(notes: list[Note], budget: int) -> list[Note]:
    """The longest prefix of `notes` that fits in `budget` words, but never fewer than one note."""
    chosen: list[Note] = []
    used = 0
    for note in notes:
        words = count_words(note.text)
        if chosen and used + words > budget:
            break
        chosen.append(note)
        used += words
    return chosen


def _sources(notes: list[Note]) -> list[str]:
    """Distinct sources in order of first use."""
    return list(dict.fromkeys(n.source for n in notes))


def _intro(subject: str, n_notes: int, sources: list[str]) -> str:
    if not n_notes:
        return f"This article looks at {subject}."
    notes = "one note" if n_notes == 1 else f"{n_notes} notes"
    origin = "one source" if len(sources) == 1 else f"{len(sources)} sources"
    return f"This article looks at {subject}. It brings together {notes} from {origin}."


def _body_paragraphs(notes: list[Note]) -> list[str]:
    """One paragraph per source (split if long), ordered by that source's best note."""
    groups: dict[str, list[str]] = {}
    for note in notes:  # notes are best first, so dict order is the order of best notes
        groups.setdefault(note.source, []).append(note.text)
    paragraphs: list[str] = []
    for texts in groups.values():
        for start in range(0, len(texts), SENTENCES_PER_PARAGRAPH):
            paragraphs.append(" ".join(texts[start:start + SENTENCES_PER_PARAGRAPH]))
    return paragraphs


def _sources_line(sources: list[str]) -> str:
    return f"Sources: {', '.join(sources)}." if sources else "Sources: none."
