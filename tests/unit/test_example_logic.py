"""Unit tests for the pure logic behind the example agents: payloads, corpus search, topics,
drafting and editing."""

from __future__ import annotations

import re

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledgerbus.examples.corpus import Document, load_corpus, search, split_sentences, stem, tokenize
from ledgerbus.examples.drafting import count_words, write_draft
from ledgerbus.examples.editing import NO_CHANGES, SYNONYMS, edit
from ledgerbus.examples.payloads import (
    Article, ArticleRequest, Draft, DraftRequest, EditedArticle, EditRequest, Note, ResearchNotes,
    ResearchQuery,
)
from ledgerbus.examples.topics import ANGLES, subtopics, title_case

CORPUS = load_corpus()
SENTENCES = {d.id: split_sentences(d.text) for d in CORPUS}
topics_text = st.text(min_size=1, max_size=250).filter(lambda s: s.strip())


def draft(body: str, title: str = "A Title") -> Draft:
    return Draft(title=title, body=body, sources=[], word_count=count_words(body))


def again(article: EditedArticle, max_words: int) -> EditedArticle:
    return edit(EditRequest(draft=draft(article.body, article.title), max_words=max_words))


# --- payloads -------------------------------------------------------------------------------

def test_payloads_travel_in_camel_case_and_round_trip() -> None:
    req = DraftRequest(topic="raft", notes=[Note(text="A fact.", source="raft-consensus", score=1.5)],
                       target_words=120)
    wire = msgspec.json.encode(req)
    assert b'"targetWords":120' in wire
    assert msgspec.json.decode(wire, type=DraftRequest) == req


def test_defaults_apply_when_fields_are_missing() -> None:
    assert msgspec.json.decode(b'{"topic":"x"}', type=ResearchQuery).max_notes == 5
    assert msgspec.json.decode(b'{"topic":"x"}', type=ArticleRequest).subtopics == 3


@pytest.mark.parametrize("kind, payload", [
    (ResearchQuery, {"topic": "x", "maxNotes": 3, "extra": 1}),
    (ResearchQuery, {"topic": "x", "max_notes": 3}),  # snake case is a typo on the wire
    (ResearchQuery, {"topic": ""}),
    (ResearchQuery, {"topic": "   "}),
    (ResearchQuery, {"topic": "x" * 201}),
    (ResearchQuery, {"topic": "x", "maxNotes": 0}),
    (ResearchQuery, {"topic": "x", "maxNotes": 21}),
    (DraftRequest, {"topic": "x", "notes": [], "targetWords": 49}),
    (DraftRequest, {"topic": "x", "notes": [], "targetWords": 5001}),
    (DraftRequest, {"topic": "x", "notes": [{"text": "t", "source": "s", "score": -1.0}]}),
    (ArticleRequest, {"topic": "x", "subtopics": 0}),
    (ArticleRequest, {"topic": "x", "subtopics": 9}),
    (EditRequest, {"draft": {"title": "t", "body": "b", "sources": [], "wordCount": 1}, "maxWords": 10}),
])
def test_invalid_payloads_are_rejected(kind: type, payload: dict[str, object]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(payload, kind)


@pytest.mark.parametrize("kind", [ResearchQuery, Note, ResearchNotes, DraftRequest, Draft, EditRequest,
                                  EditedArticle, ArticleRequest, Article])
def test_json_schema_describes_each_payload(kind: type) -> None:
    schema = msgspec.json.schema(kind)
    definition = schema["$defs"][kind.__name__]
    assert definition["description"] == kind.__doc__
    assert definition["additionalProperties"] is False


# --- corpus and search ----------------------------------------------------------------------

def test_corpus_is_a_few_dozen_short_documents_with_unique_ids() -> None:
    assert 30 <= len(CORPUS) <= 40
    assert len({d.id for d in CORPUS}) == len(CORPUS)
    for doc in CORPUS:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", doc.id), doc.id
        assert doc.title.strip()
        assert 3 <= len(SENTENCES[doc.id]) <= 6, doc.id


def test_load_corpus_hands_out_copies() -> None:
    first = load_corpus()
    first.clear()
    assert load_corpus() == CORPUS


def test_light_stemmer_and_tokenizer() -> None:
    assert [stem(w) for w in ["retries", "queues", "gardening", "limited", "bus", "process"]] == \
        ["retry", "queue", "garden", "limit", "bus", "process"]
    assert tokenize("The Circuit-Breakers of a system") == ["circuit", "breaker", "system"]


@pytest.mark.parametrize("topic, expected", [
    ("event sourcing", "event-sourcing"),
    ("circuit breaker", "circuit-breakers"),
    ("retries and exponential backoff", "retries-backoff"),
    ("Raft consensus", "raft-consensus"),
    ("NATS", "nats-messaging"),
    ("urban gardening", "urban-gardening"),
    ("brewing coffee", "coffee-brewing"),
    ("rate limiting", "rate-limiting"),
    ("space exploration", "space-exploration"),
    ("idempotency keys", "idempotency"),
    ("distributed tracing", "distributed-tracing"),
])
def test_search_puts_the_matching_document_first(topic: str, expected: str) -> None:
    notes = search(topic, 5)
    assert notes[0].source == expected
    assert notes[0].score > 0


def test_subject_of_a_subtopic_keeps_results_on_topic() -> None:
    # "trade-offs" alone would pull in CQRS and databases; the subject before ':' must win.
    notes = search("coffee: failure modes and trade-offs", 8)
    assert notes and all(n.source.startswith("coffee-") for n in notes)


def test_the_angle_of_a_subtopic_reorders_the_notes() -> None:
    trade_offs = search("event sourcing: failure modes and trade-offs", 4)
    assert trade_offs[0].text.startswith("The trade-off is eventual consistency")
    assert search("coffee: how it works in practice", 4) != search("coffee: foundations", 4)


def test_search_returns_ranked_sentences_of_their_sources() -> None:
    notes = search("message queues and NATS", 10)
    assert len(notes) == 10
    assert [n.score for n in notes] == sorted((n.score for n in notes), reverse=True)
    for note in notes:
        assert note.text in SENTENCES[note.source]
        assert note.score == round(note.score, 4)
    assert len({n.text for n in notes}) == len(notes)


def test_search_spreads_notes_over_sources_before_repeating_one() -> None:
    notes = search("messages", 6)
    assert max(sum(n.source == s for n in notes) for s in {n.source for n in notes}) <= 2


def test_unmatched_topic_still_gets_general_notes() -> None:
    notes = search("zzxq qqvb", 4)
    assert len(notes) == 4
    assert all(n.score == 0.0 for n in notes)
    assert [n.source for n in notes] == sorted(d.id for d in CORPUS)[:4]


def test_search_edge_cases() -> None:
    assert search("anything", 3, corpus=[]) == []
    with pytest.raises(ValueError):
        search("raft", 0)


def test_search_breaks_ties_by_document_id() -> None:
    text = "Otters hold hands while sleeping. Otters use rocks as tools."
    docs = [Document(id=i, title="Otters", text=text) for i in ("zeta", "alpha", "mid")]
    notes = search("otters", 6, corpus=docs)
    assert [(n.source, n.text) for n in notes[:3]] == \
        [("alpha", "Otters hold hands while sleeping."), ("alpha", "Otters use rocks as tools."),
         ("mid", "Otters hold hands while sleeping.")]


@settings(max_examples=60, deadline=None)
@given(topic=topics_text, max_notes=st.integers(1, 20))
def test_search_is_deterministic_and_never_empty(topic: str, max_notes: int) -> None:
    notes = search(topic, max_notes)
    assert notes == search(topic, max_notes)
    assert 1 <= len(notes) <= max_notes
    assert all(n.text in SENTENCES[n.source] for n in notes)


# --- topics ---------------------------------------------------------------------------------

@given(topic=topics_text, n=st.integers(1, len(ANGLES)))
def test_subtopics_are_n_distinct_valid_research_topics(topic: str, n: int) -> None:
    subs = subtopics(topic, n)
    assert len(subs) == n
    assert len(set(subs)) == n
    assert subs == subtopics(topic, n)
    for sub in subs:
        msgspec.convert({"topic": sub}, ResearchQuery)  # fits the wire limits
        assert sub.split(": ")[0] in " ".join(topic.split())


def test_subtopics_keep_the_topic_and_vary_the_angle() -> None:
    assert subtopics("  event   sourcing ", 3) == [
        "event sourcing: foundations",
        "event sourcing: how it works in practice",
        "event sourcing: failure modes and trade-offs",
    ]


def test_subtopics_of_a_long_topic_fit_the_topic_limit() -> None:
    topic = " ".join(["distributed"] * 30)  # 359 characters
    subs = subtopics(topic, 8)
    assert all(len(s) <= 200 for s in subs)
    assert subs[0].startswith("distributed distributed") and subs[0].endswith("d: foundations")


@pytest.mark.parametrize("topic, n", [("raft", 0), ("raft", 9), ("   ", 2)])
def test_subtopics_reject_bad_arguments(topic: str, n: int) -> None:
    with pytest.raises(ValueError):
        subtopics(topic, n)


@pytest.mark.parametrize("text, expected", [
    ("the rise of event sourcing", "The Rise of Event Sourcing"),
    ("NATS and SQLite in practice", "NATS and SQLite in Practice"),
    ("a guide to The retry loop", "A Guide to the Retry Loop"),
    ("agents: an overview", "Agents: An Overview"),
    ("what to look for", "What to Look For"),
    ("the lord of THE rings", "The Lord of THE Rings"),  # all caps may be an acronym: kept
])
def test_title_case(text: str, expected: str) -> None:
    assert title_case(text) == expected


@given(st.text(max_size=80))
def test_title_case_is_idempotent(text: str) -> None:
    once = title_case(text)
    assert title_case(once) == once


# --- drafting -------------------------------------------------------------------------------

def research(topic: str, n: int = 3, per: int = 5) -> list[Note]:
    return [note for sub in subtopics(topic, n) for note in search(sub, per)]


def test_draft_is_built_only_from_the_notes() -> None:
    notes = research("event sourcing")
    d = write_draft(DraftRequest(topic="event sourcing", notes=notes, target_words=1000))
    assert d.title == "Event Sourcing"
    assert d.word_count == count_words(d.body)
    paragraphs = d.body.split("\n\n")
    assert paragraphs[0].startswith("This article looks at event sourcing.")
    assert paragraphs[-1] == f"Sources: {', '.join(d.sources)}."
    texts = {n.text for n in notes}
    used = [s for p in paragraphs[1:-2] for s in split_sentences(p)]
    assert set(used) == texts  # everything used, nothing invented
    assert len(used) == len(texts)  # duplicates from overlapping searches appear once
    assert d.sources == list(dict.fromkeys(n.source for n in sorted(notes, key=lambda n: -n.score)))


def test_draft_length_follows_the_target() -> None:
    notes = research("agent orchestration", n=8)
    short = write_draft(DraftRequest(topic="agents", notes=notes, target_words=50))
    long_ = write_draft(DraftRequest(topic="agents", notes=notes, target_words=400))
    assert short.word_count < long_.word_count <= 450
    assert short.sources and short.sources[0] in long_.sources  # at least one note, always
    assert set(short.sources) <= set(long_.sources)


def test_draft_without_notes_is_still_a_draft() -> None:
    d = write_draft(DraftRequest(topic="what is raft?", notes=[]))
    assert d.title == "What Is Raft?"
    assert d.sources == []
    assert "This article looks at what is raft." in d.body
    assert d.body.endswith("Sources: none.")


notes_strategy = st.lists(st.builds(
    Note, text=st.text(min_size=1, max_size=60).filter(str.strip),
    source=st.sampled_from(["a", "b", "c"]), score=st.floats(0, 10)), max_size=12)


@given(notes=notes_strategy, target=st.integers(50, 500))
def test_draft_counts_its_words_and_cites_what_it_uses(notes: list[Note], target: int) -> None:
    d = write_draft(DraftRequest(topic="Topic", notes=notes, target_words=target))
    assert d.word_count == count_words(d.body)
    assert set(d.sources) <= {n.source for n in notes}
    assert d == write_draft(DraftRequest(topic="Topic", notes=notes, target_words=target))


# --- editing --------------------------------------------------------------------------------

@pytest.mark.parametrize("topic", ["event sourcing", "coffee", "climate change", "multi-agent systems",
                                   "rate limiting", "space exploration", "urban gardening"])
def test_a_good_draft_needs_no_changes(topic: str) -> None:
    d = write_draft(DraftRequest(topic=topic, notes=research(topic)))
    result = edit(EditRequest(draft=d, max_words=600))
    assert result.changes == [NO_CHANGES]
    assert (result.title, result.body, result.word_count) == (d.title, d.body, d.word_count)


def test_editor_fixes_and_reports_each_problem() -> None:
    body = ("this is is a very very important point, and it is very good  \n\n\n"
            "another  point is that the the the bus is fast\n\nSources: x.")
    result = edit(EditRequest(draft=draft(body, "the   case of the   bus")))
    assert result.title == "The Case of the Bus"
    assert result.body == ("This is a very important point, and it is highly good.\n\n"
                           "Another point is that the bus is fast.\n\nSources: x.")
    assert result.changes == [
        "put the title in Title Case: 'The Case of the Bus'",
        "collapsed extra whitespace and blank lines",
        "removed doubled word 'is' (1×)",
        "removed doubled word 'very' (1×)",
        "removed doubled word 'the' (2×)",
        "replaced repeated 'very' with 'highly' (1×)",
        "added a full stop to the end of 2 paragraphs",
        "capitalised 2 sentence starts",
    ]
    assert result.word_count == count_words(result.body)


def test_repetitions_far_apart_are_left_alone() -> None:
    filler = "one two three four five six seven eight nine ten eleven twelve"
    body = f"Important work is {filler} with important care."
    assert edit(EditRequest(draft=draft(body))).changes == [NO_CHANGES]


def test_synonyms_keep_case_and_avoid_making_doubled_words() -> None:
    body = "Many hands. Many tools. Many numerous things."
    result = edit(EditRequest(draft=draft(body)))
    assert result.body == "Many hands. Numerous tools. Many numerous things."


def test_replacements_follow_the_case_of_the_word_they_replace() -> None:
    body = "It is VERY fast and VERY cheap. Very nice, very."
    assert edit(EditRequest(draft=draft(body))).body == "It is VERY fast and HIGHLY cheap. Highly nice, highly."


def test_abbreviations_do_not_start_sentences() -> None:
    body = "Use a queue, e.g. nats, for this. then stop."
    assert edit(EditRequest(draft=draft(body))).body == "Use a queue, e.g. nats, for this. Then stop."


def test_trim_cuts_at_a_sentence_boundary_and_keeps_the_sources_line() -> None:
    sentence = "Each sentence here has exactly eight words total."
    paragraphs = [" ".join([sentence] * 5)] * 4 + ["Sources: a, b."]
    result = edit(EditRequest(draft=draft("\n\n".join(paragraphs)), max_words=100))
    # 97 words are left after the 3-word sources line: 12 whole sentences, 2.4 paragraphs.
    assert result.body.split("\n\n") == [paragraphs[0], paragraphs[0], " ".join([sentence] * 2),
                                          "Sources: a, b."]
    assert result.word_count == 99
    assert result.changes == ["trimmed from 163 to 99 words"]


def test_trim_cuts_inside_a_sentence_only_when_nothing_else_fits() -> None:
    body = " ".join(f"w{i}," for i in range(80))
    result = edit(EditRequest(draft=draft(body), max_words=50))
    assert result.word_count == 50
    assert result.body.endswith("w49.")


def test_max_words_must_be_positive() -> None:
    with pytest.raises(ValueError):
        edit(EditRequest(draft=draft("Fine."), max_words=0))  # constructors do not validate


vocabulary = st.sampled_from(
    [*SYNONYMS, *SYNONYMS.values(), "the", "The", "a", "bus", "e.g.", "end.", "why?", "wow!", "x,",
     "(quoted", "it's", "1", "..."])
separators = st.sampled_from([" ", " ", " ", "  ", "\n", "\n\n", " \n \n ", "\t"])
prose = st.lists(st.tuples(vocabulary, separators), max_size=120).map(
    lambda pairs: "".join(w + s for w, s in pairs))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.one_of(prose, st.text(max_size=200)), title=st.text(min_size=1, max_size=40),
       max_words=st.integers(5, 80))
def test_edit_is_idempotent(body: str, title: str, max_words: int) -> None:
    first = edit(EditRequest(draft=draft(body, title), max_words=max_words))
    second = again(first, max_words)
    assert second.changes == [NO_CHANGES]
    assert (second.title, second.body) == (first.title, first.body)
    assert first.word_count == count_words(first.body) <= max(max_words, 0)
    assert first.word_count <= count_words(body)
