"""The editor agent's logic: deterministic checks and fixes on a draft, each one reported.

Every fix is chosen so that editing an edited article changes nothing: fixes never add words,
replacements are single words that are not themselves replaced, and the order of the passes
means a later pass cannot undo or re-trigger an earlier one.
"""

from __future__ import annotations

import re
from collections import Counter

from ledgerbus.examples.drafting import count_words
from ledgerbus.examples.payloads import EditedArticle, EditRequest
from ledgerbus.examples.topics import title_case

#: Overused word -> a one-word stand-in. No value is also a key (so replacements are final), and
#: each keeps the key's vowel or consonant sound at the start, so "an"/"a" before it stays right.
SYNONYMS: dict[str, str] = {
    "very": "highly", "really": "truly", "important": "essential", "significant": "notable",
    "many": "numerous", "often": "frequently", "quickly": "rapidly", "easily": "readily",
    "simple": "straightforward", "useful": "helpful", "good": "solid", "large": "sizeable",
    "common": "typical", "different": "distinct", "main": "chief", "fast": "quick",
    "however": "nevertheless", "also": "additionally", "shows": "reveals", "uses": "employs",
    "great": "superb", "critical": "crucial", "several": "various", "quite": "fairly",
}
assert not set(SYNONYMS) & set(SYNONYMS.values())

REPEAT_WINDOW = 10  # words: a second use this close to the first reads as a repetition
ABBREVIATIONS = frozenset({"e.g.", "i.e.", "cf.", "vs.", "mr.", "mrs.", "ms.", "dr.", "st.", "no."})
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_DOUBLED = re.compile(r"\b([^\W\d_]+)(?:\s+\1\b)+", re.IGNORECASE)
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")
_TERMINAL = re.compile(r"[.!?…][\"'”’)\]]*$")
_OPENERS = "\"'([{“‘"
NO_CHANGES = "no changes needed"


def edit(req: EditRequest) -> EditedArticle:
    """The draft with its problems fixed, and one readable line per kind of fix in `changes`."""
    if req.max_words < 1:
        raise ValueError(f"max_words must be at least 1, got {req.max_words}")
    changes: list[str] = []
    title = _fix_title(req.draft.title, changes)
    paragraphs = _split_paragraphs(req.draft.body, changes)
    paragraphs = _fix_doubled_words(paragraphs, changes)
    paragraphs = _vary_repeated_words(paragraphs, changes)
    paragraphs = _fix_end_punctuation(paragraphs, changes)
    paragraphs = _capitalise_sentences(paragraphs, changes)
    paragraphs = _trim(paragraphs, req.max_words, changes)
    body = "\n\n".join(paragraphs)
    return EditedArticle(title=title, body=body, word_count=count_words(body),
                         changes=changes or [NO_CHANGES])


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _fix_title(title: str, changes: list[str]) -> str:
    collapsed = " ".join(title.split())
    fixed = title_case(collapsed)
    if fixed != collapsed:
        changes.append(f"put the title in Title Case: {fixed!r}")
    elif collapsed != title:
        changes.append("collapsed extra whitespace in the title")
    return fixed


def _split_paragraphs(body: str, changes: list[str]) -> list[str]:
    """Paragraphs (separated by blank lines) with every run of whitespace made a single space."""
    paragraphs = [" ".join(p.split()) for p in _PARAGRAPH_BREAK.split(body)]
    paragraphs = [p for p in paragraphs if p]
    if "\n\n".join(paragraphs) != body:
        changes.append("collapsed extra whitespace and blank lines")
    return paragraphs


def _fix_doubled_words(paragraphs: list[str], changes: list[str]) -> list[str]:
    removed: Counter[str] = Counter()

    def keep_first(m: re.Match[str]) -> str:
        removed[m.group(1).lower()] += len(m.group(0).split()) - 1
        return m.group(1)

    fixed = [_DOUBLED.sub(keep_first, p) for p in paragraphs]
    for word, n in removed.items():  # Counter keeps first-seen order
        changes.append(f"removed doubled word {word!r} ({n}×)")
    return fixed


def _vary_repeated_words(paragraphs: list[str], changes: list[str]) -> list[str]:
    """Swap in a synonym when an overused word comes back within REPEAT_WINDOW words."""
    replaced: Counter[tuple[str, str]] = Counter()
    fixed = [_vary_paragraph(p, replaced) for p in paragraphs]
    for (word, synonym), n in replaced.items():
        changes.append(f"replaced repeated {word!r} with {synonym!r} ({n}×)")
    return fixed


def _vary_paragraph(paragraph: str, replaced: Counter[tuple[str, str]]) -> str:
    matches = list(_WORD.finditer(paragraph))
    last_kept: dict[str, int] = {}
    pieces: list[str] = []
    pos = 0
    for i, m in enumerate(matches):
        word = m.group(0)
        key = word.lower()
        if key not in SYNONYMS:
            continue
        synonym = SYNONYMS[key]
        neighbours = {_edge(matches, i - 1, last=True), _edge(matches, i + 1, last=False)}
        if key in last_kept and i - last_kept[key] <= REPEAT_WINDOW and synonym not in neighbours:
            pieces += [paragraph[pos:m.start()], _match_case(synonym, word)]
            pos = m.end()
            replaced[(key, synonym)] += 1
        else:
            last_kept[key] = i
    return "".join(pieces) + paragraph[pos:]


def _edge(matches: list[re.Match[str]], i: int, *, last: bool) -> str:
    """The part of a neighbouring word that could form a doubled word with a replacement."""
    if not 0 <= i < len(matches):
        return ""
    parts = matches[i].group(0).lower().split("'")
    return parts[-1] if last else parts[0]


def _match_case(replacement: str, original: str) -> str:
    if len(original) > 1 and original.isupper():
        return replacement.upper()
    if original[0].isupper():
        return replacement[0].upper() + replacement[1:]
    return replacement


def _ends_sentence(word: str) -> bool:
    return bool(_TERMINAL.search(word)) and word.lstrip(_OPENERS).lower() not in ABBREVIATIONS


def _fix_end_punctuation(paragraphs: list[str], changes: list[str]) -> list[str]:
    fixed: list[str] = []
    for p in paragraphs:
        fixed.append(p if _TERMINAL.search(p) else p.rstrip(",;: ") + ".")
    n = sum(a != b for a, b in zip(paragraphs, fixed))
    if n:
        changes.append(f"added a full stop to the end of {_plural(n, 'paragraph')}")
    return fixed


def _capitalise_sentences(paragraphs: list[str], changes: list[str]) -> list[str]:
    count = 0
    fixed: list[str] = []
    for p in paragraphs:
        words = p.split(" ")
        at_start = True
        for i, word in enumerate(words):
            if at_start:
                words[i] = _capitalise(word)
                count += words[i] != word
            at_start = _ends_sentence(word)
        fixed.append(" ".join(words))
    if count:
        changes.append(f"capitalised {_plural(count, 'sentence start')}")
    return fixed


def _capitalise(word: str) -> str:
    k = len(word) - len(word.lstrip(_OPENERS))
    if k < len(word) and word[k].islower() and len(word[k].upper()) == 1:
        return word[:k] + word[k].upper() + word[k + 1:]
    return word


def _trim(paragraphs: list[str], max_words: int, changes: list[str]) -> list[str]:
    """Cut the body to `max_words` at a sentence boundary, keeping a closing "Sources:" line."""
    total = sum(count_words(p) for p in paragraphs)
    if total <= max_words:
        return paragraphs
    trailer: list[str] = []
    if len(paragraphs) > 1 and paragraphs[-1].startswith("Sources:") \
            and count_words(paragraphs[-1]) < max_words:
        trailer = [paragraphs[-1]]
        paragraphs = paragraphs[:-1]
    budget = max_words - sum(count_words(p) for p in trailer)
    kept = _sentence_prefix(paragraphs, budget)
    if not kept:
        # Not even the first sentence fits: cut it mid-way rather than go over the limit.
        words = paragraphs[0].split()[:budget]
        words[-1] = words[-1] if _TERMINAL.search(words[-1]) else words[-1].rstrip(",;:") + "."
        kept = [" ".join(words)]
    result = kept + trailer
    changes.append(f"trimmed from {total} to {sum(count_words(p) for p in result)} words")
    return result


def _sentence_prefix(paragraphs: list[str], budget: int) -> list[str]:
    """The longest run of whole sentences from the start that fits in `budget` words."""
    kept: list[str] = []
    used = 0
    for p in paragraphs:
        words = p.split(" ")
        sentence: list[str] = []
        done: list[str] = []
        for j, word in enumerate(words):
            sentence.append(word)
            if _ends_sentence(word) or j == len(words) - 1:
                if used + len(sentence) > budget:
                    return kept + ([" ".join(done)] if done else [])
                used += len(sentence)
                done += sentence
                sentence = []
        kept.append(" ".join(done))
    return kept
