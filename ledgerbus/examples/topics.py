"""Topic helpers: splitting a topic into research angles, and turning a topic into a title."""

from __future__ import annotations

from ledgerbus.examples.payloads import MAX_SUBTOPICS, MAX_TOPIC_LENGTH

#: The angles a topic is researched from, in the order they are handed out. Sub-topics take the
#: form "<topic>: <angle>", which `corpus.search` reads as subject plus re-ranking hint.
ANGLES: tuple[str, ...] = (
    "foundations",
    "how it works in practice",
    "failure modes and trade-offs",
    "history and origins",
    "tools and techniques",
    "common mistakes",
    "real-world examples",
    "future directions",
)
assert len(ANGLES) == MAX_SUBTOPICS

#: Words Title Case leaves in lower case unless they open or close the title (or follow a colon).
SMALL_WORDS = frozenset(
    "a an and as at but by en for from if in into nor of off on onto or per the to up via vs with"
    .split()
)
_OPENERS = "\"'([{“‘"


def normalize_topic(topic: str) -> str:
    """The topic with runs of whitespace collapsed; raises ValueError if nothing is left."""
    cleaned = " ".join(topic.split())
    if not cleaned:
        raise ValueError("topic must not be blank")
    return cleaned


def subtopics(topic: str, n: int) -> list[str]:
    """`n` distinct sub-topics of `topic`, one per research angle, each at most 200 characters."""
    if not 1 <= n <= len(ANGLES):
        raise ValueError(f"n must be between 1 and {len(ANGLES)}, got {n}")
    base = normalize_topic(topic)
    # Each sub-topic becomes a ResearchQuery.topic, which has the same length limit as a topic.
    room = MAX_TOPIC_LENGTH - len(": ") - max(len(a) for a in ANGLES[:n])
    base = _shorten(base, room)
    return [f"{base}: {angle}" for angle in ANGLES[:n]]


def _shorten(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, at a word boundary when there is one."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    if " " in cut and not text[limit].isspace():
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" :") or text[:limit]


def title_case(text: str) -> str:
    """`text` in Title Case; idempotent, and words with capitals already (NATS, SQLite) are kept."""
    words = text.split()
    out: list[str] = []
    for i, word in enumerate(words):
        edge = i == 0 or i == len(words) - 1 or words[i - 1].endswith(":")
        out.append(_title_word(word, small_ok=not edge))
    return " ".join(out)


def _title_word(word: str, *, small_ok: bool) -> str:
    start = len(word) - len(word.lstrip(_OPENERS))
    core = word[start:]
    if not core or not core[0].isalpha():
        return word
    if small_ok and core.lower().strip(".,;:!?\"')]}”’") in SMALL_WORDS:
        # "The" in mid-title becomes "the"; "THE" (shouting or an acronym) is left alone.
        if core[0].isupper() and core[1:] == core[1:].lower():
            return word[:start] + core[0].lower() + core[1:]
        return word
    if core == core.lower() and len(core[0].upper()) == 1:
        return word[:start] + core[0].upper() + core[1:]
    return word
