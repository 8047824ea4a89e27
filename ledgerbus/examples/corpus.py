"""The research agent's bundled corpus and a small, deterministic keyword search over it.

No embeddings and no network: the example agents must run offline and give the same answer for
the same question every time, so tests and demos can assert on their output.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from importlib import resources

import msgspec

from ledgerbus.examples.payloads import Note


class Document(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One short corpus document; `id` is the slug notes cite as their source."""

    id: str
    title: str
    text: str


STOP_WORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers him his how i if in into is it its itself just
    me more most my no nor not of off on once only or other our out over own same she should so
    some such than that the their them then there these they this those through to too under
    until up very was we were what when where which while who whom why will with would you your
    vs via per versus etc""".split()
)

# Applied in order, first match wins; the minimum stem length keeps short words like "bus" intact.
_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("ies", "y"), ("ied", "y"), ("sses", "ss"), ("ing", ""), ("ed", ""), ("ly", ""), ("s", ""),
)
_MIN_STEM = 3
_TOKEN_RE = re.compile(r"[a-z0-9]+")
# A sentence ends at . ! or ? followed by whitespace and something that can start a sentence.
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")

#: Query expansion for the angle of a "subject: angle" topic (see `topics.ANGLES`): angle words
#: rarely occur in the documents themselves, so without these every angle would rank alike.
RELATED: dict[str, tuple[str, ...]] = {
    "foundations": ("basic", "core", "central", "idea", "principle", "means", "simplest"),
    "practice": ("use", "usually", "typical", "step", "common", "pattern"),
    "failure": ("fail", "failing", "crash", "error", "outage", "problem", "lost"),
    "trade": ("cost", "price", "drawback", "lag", "risk", "trading"),
    "history": ("began", "first", "since", "launched", "century", "designed"),
    "origins": ("native", "began", "spread", "first", "designed"),
    "tools": ("algorithm", "library", "framework", "pattern", "function"),
    "techniques": ("technique", "method", "algorithm", "pattern"),
    "mistakes": ("mistake", "accident", "avoid", "bad", "wrong", "problem"),
    "examples": ("example", "recent", "found", "deployed"),
    "real": ("world", "countless", "found", "deployed"),
    "future": ("future", "may", "aim", "growing", "increasingly", "new"),
    "directions": ("trend", "increasingly", "recent", "growing"),
}
RELATED_WEIGHT = 0.5  # an expansion term counts half as much as a word the user typed
TITLE_WEIGHT = 2.0  # a title word says more about a document than a body word
DOC_WEIGHT = 0.5  # how much the whole document's relevance lifts each of its sentences
PARTIAL_MATCH = 0.5  # weight of a prefix match ("cach" ~ "cache") against an exact stem match
SUBJECT_SHARE = 0.5  # a document must score this share of the best on the subject to count
PER_SOURCE_CAP = 2  # first pass takes at most this many notes per document, for variety


def stem(word: str) -> str:
    """A deliberately light stemmer: strips one common English suffix."""
    if word.endswith("ss"):
        return word
    for suffix, replacement in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) + len(replacement) >= _MIN_STEM:
            return word[: len(word) - len(suffix)] + replacement
    return word


def tokenize(text: str) -> list[str]:
    """Lowercase stems of the content words of `text`, in order."""
    return [stem(t) for t in _TOKEN_RE.findall(text.lower()) if t not in STOP_WORDS]


def split_sentences(text: str) -> list[str]:
    """The sentences of a paragraph, whitespace-normalised."""
    return [s for s in (" ".join(p.split()) for p in _SENTENCE_END_RE.split(text)) if s]


@functools.lru_cache(maxsize=1)
def _related() -> dict[str, frozenset[str]]:
    return {stem(k): frozenset(stem(v) for v in vs) for k, vs in RELATED.items()}


def query_weights(subject: str, angle: str) -> dict[str, float]:
    """Stems of the query with their weights: typed words 1.0, expansions of the angle less."""
    weights = dict.fromkeys(tokenize(subject) + tokenize(angle), 1.0)
    for term in tokenize(angle):
        for related in sorted(_related().get(term, ())):
            weights.setdefault(related, RELATED_WEIGHT)
    return weights


@functools.lru_cache(maxsize=1)
def _bundled() -> tuple[Document, ...]:
    raw = resources.files(__package__).joinpath("corpus.json").read_bytes()
    return tuple(msgspec.json.decode(raw, type=list[Document]))


def load_corpus() -> list[Document]:
    """The bundled documents, in file order (read once, then cached)."""
    return list(_bundled())


def _match_weight(query: str, term: str) -> float:
    """1 for the same stem, PARTIAL_MATCH for near-misses the light stemmer leaves behind."""
    if query == term:
        return 1.0
    short, long_ = sorted((query, term), key=len)
    if len(short) >= 4 and long_.startswith(short) and len(long_) - len(short) <= 1:
        return PARTIAL_MATCH  # "cach" ~ "cache", "sourc" ~ "source"
    common = len(_common_prefix(short, long_))
    if common >= 6 and common >= len(short) - 2:
        return PARTIAL_MATCH  # "orchestration" ~ "orchestrator"
    return 0.0


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < len(a) and n < len(b) and a[n] == b[n]:
        n += 1
    return a[:n]


def _saturate(tf: float) -> float:
    # Repeating a word should help, but with diminishing returns (as in BM25).
    return 2.0 * tf / (tf + 1.0)


class _Index:
    """Per-query view of the corpus: which vocabulary terms each query term matches, and idf."""

    def __init__(self, docs: Sequence[Document], query: Mapping[str, float]) -> None:
        self.doc_terms = [Counter(tokenize(d.title + " " + d.text)) for d in docs]
        self.title_terms = [Counter(tokenize(d.title)) for d in docs]
        vocab = sorted(set().union(*self.doc_terms)) if docs else []
        self.matches: dict[str, dict[str, float]] = {}
        self.idf: dict[str, float] = {}  # already multiplied by the term's query weight
        n = len(docs)
        for q in sorted(query):
            weights = {v: w for v in vocab if (w := _match_weight(q, v)) > 0}
            if not weights:
                continue
            df = sum(1 for terms in self.doc_terms if any(v in terms for v in weights))
            self.matches[q] = weights
            self.idf[q] = query[q] * math.log(1.0 + (n - df + 0.5) / (df + 0.5))

    def score(self, terms: Counter[str], extra: Counter[str] | None = None, boost: float = 1.0,
              only: frozenset[str] | None = None) -> float:
        """Sum over query terms (all, or `only` these) of idf times saturated term frequency."""
        total = 0.0
        for q in sorted(self.matches):
            if only is not None and q not in only:
                continue
            weights = self.matches[q]
            tf = sum(terms[v] * w for v, w in weights.items() if v in terms)
            if extra is not None:
                tf += boost * sum(extra[v] * w for v, w in weights.items() if v in extra)
            if tf:
                total += self.idf[q] * _saturate(tf)
        return total


def search(topic: str, max_notes: int, *, corpus: Sequence[Document] | None = None) -> list[Note]:
    """The sentences of the corpus most relevant to `topic`, best first, as notes.

    A topic of the form "subject: angle" (as `topics.subtopics` makes) only considers documents
    about the subject, and the angle re-ranks their sentences: "coffee: trade-offs" should not drift
    into documents about trade-offs in databases. Scores are rounded to 4 decimals and ties go to
    the document id, then the sentence position, so the result is a pure function of the arguments.
    A topic that matches nothing still gets general notes (score 0.0): the pipeline should always
    have something to write about.
    """
    if max_notes < 1:
        raise ValueError(f"max_notes must be at least 1, got {max_notes}")
    docs = sorted(load_corpus() if corpus is None else corpus, key=lambda d: d.id)
    if not docs:
        return []
    subject, _, angle = topic.partition(":")
    if not angle.strip():
        subject, angle = topic, ""
    index = _Index(docs, query_weights(subject, angle))
    doc_scores = [index.score(index.doc_terms[i], index.title_terms[i], TITLE_WEIGHT - 1.0)
                  for i in range(len(docs))]
    # With an angle, the document score already says "about the subject"; letting only the angle
    # rank sentences within it is what makes parallel searches on different angles differ.
    angle_terms = frozenset(index.matches) - frozenset(tokenize(subject)) if angle else None
    ranked: list[tuple[float, str, int, str]] = []
    for i in _candidates(subject, angle, index):
        for pos, sentence in enumerate(split_sentences(docs[i].text)):
            score = index.score(Counter(tokenize(sentence)), only=angle_terms) + DOC_WEIGHT * doc_scores[i]
            ranked.append((round(score, 4), docs[i].id, pos, sentence))
    if not ranked:
        return _general_notes(docs, max_notes)
    ranked.sort(key=lambda r: (-r[0], r[1], r[2]))
    return [Note(text=s, source=src, score=sc) for sc, src, _, s in _diversify(ranked, max_notes)]


def _candidates(subject: str, angle: str, index: _Index) -> list[int]:
    """Indexes of the documents worth ranking: those about the subject, if there is an angle,
    else those matching any typed word (expansions rank, they never make a document relevant)."""
    if angle:
        scores = [index.score(terms, only=frozenset(tokenize(subject))) for terms in index.doc_terms]
        best = max(scores)
        if best > 0:
            # Half the best subject score: "event sourcing" keeps CQRS but not every doc on events.
            return [i for i, score in enumerate(scores) if score >= SUBJECT_SHARE * best]
    typed = frozenset(tokenize(subject) + tokenize(angle))
    return [i for i, terms in enumerate(index.doc_terms) if index.score(terms, only=typed) > 0]


def _diversify(ranked: list[tuple[float, str, int, str]], limit: int) -> list[tuple[float, str, int, str]]:
    """Top `limit` rows, preferring at most PER_SOURCE_CAP per document, then filling by rank."""
    per_source: Counter[str] = Counter()
    chosen: list[int] = []
    for i, row in enumerate(ranked):
        if len(chosen) == limit:
            break
        if per_source[row[1]] < PER_SOURCE_CAP:
            per_source[row[1]] += 1
            chosen.append(i)
    if len(chosen) < limit:
        taken = set(chosen)
        chosen += [i for i in range(len(ranked)) if i not in taken][: limit - len(chosen)]
    return [ranked[i] for i in sorted(chosen)]


def _general_notes(docs: Sequence[Document], limit: int) -> list[Note]:
    """The opening sentence of each document, in id order: a neutral overview of the corpus."""
    notes: list[Note] = []
    for doc in docs:
        sentences = split_sentences(doc.text)
        if sentences:
            notes.append(Note(text=sentences[0], source=doc.id, score=0.0))
        if len(notes) == limit:
            break
    return notes
