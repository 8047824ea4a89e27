"""The envelope codec: round trips, limits checked on raw bytes before parsing, errors that name the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledgerbus.errors import InvalidMessage, LedgerbusError
from ledgerbus.schemas.codec import DEFAULT_MAX_BYTES, Codec, nesting_depth_exceeds, salvage_ids
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import MAX_SAFE_INTEGER, Envelope, ErrorInfo, answer, new_request

# -- strategies ---------------------------------------------------------------------------------

tokens = st.from_regex(r"\A[A-Za-z0-9_-]{1,40}\Z")
addresses = st.from_regex(r"\A[a-z0-9_-]{1,20}\Z")
capabilities = st.from_regex(r"\A[a-z0-9_-]{1,10}(\.[a-z0-9_-]{1,10}){0,2}\Z")
# Strings that stress the depth scanner: brackets, quotes and backslashes inside string values.
tricky_text = st.text(alphabet=st.sampled_from(list('[]{}"\\ab\n/\u00e9\u2028')), max_size=30) | st.text(max_size=20)
scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | tricky_text
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(tricky_text, inner, max_size=4),
    max_leaves=20,
)
payloads = st.dictionaries(tricky_text, json_values, max_size=5)
errors = st.none() | st.builds(
    ErrorInfo, code=st.sampled_from(["HANDLER_ERROR", "STALLED", "MY_OWN"]), message=tricky_text,
    retryable=st.booleans(), details=st.dictionaries(tricky_text, json_values, max_size=3),
)


@st.composite
def envelopes(draw: st.DrawFn) -> Envelope:
    return Envelope(
        id=draw(tokens), conversation_id=draw(tokens), task_id=draw(tokens),
        sender=draw(addresses), recipient=draw(addresses), action=draw(st.sampled_from(list(Action))),
        capability=draw(capabilities), payload=draw(payloads),
        causation_id=draw(st.none() | tokens), reply_to=draw(st.none() | addresses),
        attempt=draw(st.integers(1, 1000)), deadline=draw(st.none() | st.integers(0, MAX_SAFE_INTEGER)),
        idempotency_key=draw(st.none() | st.text(min_size=1, max_size=50)),
        timestamp=draw(st.integers(0, MAX_SAFE_INTEGER)), error=draw(errors),
        traceparent=draw(st.none() | st.just("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")),
    )


def depth(value: Any) -> int:
    """Reference nesting depth of a parsed JSON value (a scalar is 0, `[]` is 1)."""
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


codec = Codec()


def valid_dict() -> dict[str, Any]:
    env = new_request(sender="client", recipient="research", capability="research.search", payload={"topic": "x"})
    return msgspec.to_builtins(env)


def decode_error(obj: Any) -> InvalidMessage:
    data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    with pytest.raises(InvalidMessage) as info:
        codec.decode(data)
    assert isinstance(info.value, LedgerbusError)
    return info.value


# -- round trips --------------------------------------------------------------------------------

@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(envelopes())
def test_round_trip(env: Envelope) -> None:
    data = codec.encode(env)
    assert codec.decode(data) == env
    # The wire form is camelCase JSON that any JSON library reads.
    wire = json.loads(data)
    assert "conversationId" in wire and "conversation_id" not in wire
    assert wire["payload"] == json.loads(json.dumps(env.payload))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(envelopes())
def test_answers_round_trip_and_point_at_their_request(req: Envelope) -> None:
    for action in (Action.ACK, Action.PROGRESS, Action.RESPONSE, Action.ERROR):
        ans = answer(req, action, payload={"n": 1},
                     error=ErrorInfo(code="X", message="m") if action is Action.ERROR else None)
        back = codec.decode(codec.encode(ans))
        assert back == ans
        assert (back.causation_id, back.task_id, back.recipient) == (req.id, req.task_id, req.answer_to)


def test_whatever_decodes_can_be_stored(tmp_path: Path) -> None:
    from ledgerbus.eventstore.base import StoredEvent
    from ledgerbus.eventstore.sqlite import SQLiteEventStore

    extreme = {**valid_dict(), "attempt": MAX_SAFE_INTEGER, "timestamp": MAX_SAFE_INTEGER,
               "deadline": MAX_SAFE_INTEGER, "schemaVersion": MAX_SAFE_INTEGER,
               "payload": {"big": 2**70, "neg": -(2**70), "deep": _nested(20)}}
    raw = json.dumps(extreme).encode()
    env = codec.decode(raw)
    store = SQLiteEventStore(tmp_path / "ledger.db")
    try:
        assert store.append([StoredEvent(1, env, raw)]) == 1
        [back] = list(store.read())
        assert back.envelope == env and back.raw == raw
    finally:
        store.close()


def test_defaults_fill_optional_fields() -> None:
    env = codec.decode(json.dumps({
        "id": "a", "conversationId": "c", "taskId": "t", "sender": "s", "recipient": "r",
        "action": "REQUEST", "capability": "x.y",
    }).encode())
    assert (env.payload, env.attempt, env.error, env.schema_version) == ({}, 1, None, 1)
    assert env.key == "t"  # the idempotency key defaults to the task id
    assert env.answer_to == "s"


# -- validation errors name the field and the rule ----------------------------------------------

@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        ({"attempt": 0}, "$.attempt", ">= 1"),
        ({"attempt": "1"}, "$.attempt", "int"),
        ({"sender": "Evil.>"}, "$.sender", "regex"),
        ({"recipient": ""}, "$.recipient", "regex"),
        ({"conversationId": "a.b"}, "$.conversationId", "regex"),
        ({"capability": "Research Search"}, "$.capability", "regex"),
        ({"action": "DELETE"}, "$.action", "DELETE"),
        ({"payload": [1, 2]}, "$.payload", "object"),
        ({"idempotencyKey": ""}, "$.idempotencyKey", "length"),
        ({"error": {"code": "X"}}, "$.error.message", "missing required field"),
        ({"error": {"code": "X", "message": "m", "extra": 1}}, "$.error.extra", "unknown field"),
        ({"shadow": True}, "$.shadow", "unknown field"),
        # Python's `$` matches before a trailing newline: ids become subject tokens, so it must not pass.
        ({"sender": "research\n"}, "$.sender", "regex"),
        ({"replyTo": "tester\n"}, "$.replyTo", "regex"),
        ({"conversationId": "c1\n"}, "$.conversationId", "regex"),
        ({"causationId": "e1\n"}, "$.causationId", "regex"),
        ({"capability": "research.search\n"}, "$.capability", "regex"),
        # Numbers a TypeScript agent cannot represent, which the SQLite mirror cannot store either.
        ({"attempt": 2**63}, "$.attempt", "<= 9007199254740991"),
        ({"timestamp": 2**64 - 1}, "$.timestamp", "<="),
        ({"timestamp": -5}, "$.timestamp", ">= 0"),
        ({"deadline": 2**53}, "$.deadline", "<="),
        ({"schemaVersion": 0}, "$.schemaVersion", ">= 1"),
    ],
)
def test_invalid_field_is_named(change: dict[str, Any], path: str, words: str) -> None:
    exc = decode_error({**valid_dict(), **change})
    assert exc.code == "INVALID_MESSAGE"
    assert exc.path == path
    assert words in exc.reason
    assert path in exc.reason or path.rsplit(".", 1)[1] in exc.reason


@pytest.mark.parametrize("missing", ["id", "conversationId", "taskId", "sender", "recipient", "action", "capability"])
def test_missing_required_field_is_named(missing: str) -> None:
    obj = valid_dict()
    del obj[missing]
    exc = decode_error(obj)
    assert exc.path == f"$.{missing}"
    assert f"`{missing}`" in exc.reason


@pytest.mark.parametrize("data", [b"", b"{", b"{not json}", b'{"id": "a",}', b"\xff\xfe", b"nul", b"[]", b"42", b'"x"'])
def test_malformed_or_non_object_input_is_refused(data: bytes) -> None:
    exc = decode_error(data)
    assert exc.code == "INVALID_MESSAGE"
    assert exc.reason  # a readable reason, never an empty message


# -- limits, checked before parsing ------------------------------------------------------------

def test_size_limit_is_checked_before_parsing() -> None:
    small = Codec(max_bytes=1000)
    big = json.dumps({**valid_dict(), "payload": {"blob": "x" * 2000}}).encode()
    with pytest.raises(InvalidMessage) as info:
        small.decode(big)
    assert info.value.code == "PAYLOAD_TOO_LARGE"
    assert info.value.details == {"size": len(big), "limit": 1000}
    # Malformed and oversized: the size verdict comes first, so no parse was attempted.
    with pytest.raises(InvalidMessage) as info:
        small.decode(b"{" + b"x" * 2000)
    assert info.value.code == "PAYLOAD_TOO_LARGE"


class _NoParse:
    """Stands in for the decoder: a limit check that works never reaches it."""

    def decode(self, data: bytes) -> Envelope:
        raise AssertionError("the parser ran on a message the limits should have refused")


@pytest.mark.parametrize(
    ("data", "code"),
    [(b'{"payload":"' + b"x" * 2000 + b'"}', "PAYLOAD_TOO_LARGE"), (b"[" * 50 + b"]" * 50, "PAYLOAD_TOO_DEEP"),
     (b'{"a":' * 40 + b"1" + b"}" * 40, "PAYLOAD_TOO_DEEP")],
)
def test_limits_refuse_without_running_the_parser(data: bytes, code: str) -> None:
    guarded = Codec(max_bytes=1000, max_depth=32)
    guarded._decoder = _NoParse()  # type: ignore[assignment]
    with pytest.raises(InvalidMessage) as info:
        guarded.decode(data)
    assert info.value.code == code


def test_encode_refuses_what_decode_would_refuse() -> None:
    small = Codec(max_bytes=1000)
    env = new_request(sender="a", recipient="b", capability="x.y", payload={"blob": "x" * 2000})
    with pytest.raises(InvalidMessage) as info:
        small.encode(env)
    assert (info.value.code, info.value.path) == ("PAYLOAD_TOO_LARGE", "$.payload")
    assert info.value.details["limit"] == 1000 and info.value.details["size"] > 1000


def test_size_limit_boundary() -> None:
    data = codec.encode(new_request(sender="a", recipient="b", capability="x.y", payload={}))
    exact = Codec(max_bytes=len(data))
    assert exact.decode(data).sender == "a"
    with pytest.raises(InvalidMessage) as info:
        Codec(max_bytes=len(data) - 1).decode(data)
    assert info.value.code == "PAYLOAD_TOO_LARGE"


def test_default_size_limit_leaves_room_under_nats_max_payload() -> None:
    assert DEFAULT_MAX_BYTES < 1024 * 1024
    big = json.dumps({**valid_dict(), "payload": {"blob": "x" * DEFAULT_MAX_BYTES}}).encode()
    assert decode_error(big).code == "PAYLOAD_TOO_LARGE"


def _nested(levels: int) -> dict[str, Any]:
    value: Any = "leaf"
    for i in range(levels):
        value = [value] if i % 2 else {"k": value}
    return value


def test_depth_limit_is_checked_before_parsing() -> None:
    # 100,000 open brackets would blow msgspec's recursion limit; the scan refuses it first.
    hostile = b'{"id":"a","payload":' + b"[" * 100_000
    exc = decode_error(hostile)
    assert exc.code == "PAYLOAD_TOO_DEEP"
    assert exc.details == {"limit": codec.max_depth}


def test_depth_limit_boundary() -> None:
    limited = Codec(max_depth=6)
    ok = json.dumps({**valid_dict(), "payload": _nested(5)}).encode()  # envelope 1 + payload 5 = 6
    too_deep = json.dumps({**valid_dict(), "payload": _nested(6)}).encode()
    assert limited.decode(ok).payload == _nested(5)
    with pytest.raises(InvalidMessage) as info:
        limited.decode(too_deep)
    assert info.value.code == "PAYLOAD_TOO_DEEP"


@pytest.mark.parametrize(
    "text",
    [
        "[" * 200,  # brackets inside a string are not nesting
        "{" * 200 + "]" * 3,
        '\\"' + "[" * 200,  # an escaped quote does not end the string
        "\\\\" + "{" * 50,  # an escaped backslash, then more string
        '\\\\\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[',
    ],
)
def test_brackets_inside_strings_do_not_count(text: str) -> None:
    data = json.dumps({**valid_dict(), "payload": {"text": text, text: [text]}}).encode()
    assert data.count(b"[") + data.count(b"{") > codec.max_depth  # the slow path runs
    assert codec.decode(data).payload["text"] == text


@pytest.mark.parametrize(
    ("data", "deep"),
    [
        (b'{"a":"' + b"[" * 100, False),  # an unterminated string runs to the end, as the parser reads it
        (b"[" * 20 + b'"x' + b"[" * 20 + b"\\", False),  # ... even when it ends in a lone backslash
        (b'"' * 1000 + b"[" * 40, True),  # 500 empty strings, then real nesting
        (b'"' + b'\\"' * 1000 + b'"' + b"[" * 40, True),  # a string of escaped quotes, closed, then nesting
        (b'"' + b'\\"' * 1000 + b"[" * 40, False),  # ... never closed: all of it is string
        (b"[]" * 1000, False),  # many brackets, never deep
        (b"[" * 33 + b"]" * 33, True),
        (b"[" * 32 + b"]" * 32, False),
    ],
)
def test_depth_scan_edge_cases(data: bytes, deep: bool) -> None:
    assert nesting_depth_exceeds(data, 32) is deep


def test_an_escaped_backslash_closes_the_string_so_later_brackets_count() -> None:
    # "a\\" ends after the escaped backslash: the brackets after it are real nesting.
    data = b'{"a":"x\\\\","b":' + b"[" * 40 + b"]" * 40 + b"}"
    assert json.loads(data)["a"] == "x\\"
    assert nesting_depth_exceeds(data, 32)
    assert not nesting_depth_exceeds(data, 41)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values, st.integers(0, 8))
def test_depth_scan_agrees_with_the_parsed_depth(value: Any, limit: int) -> None:
    data = json.dumps(value).encode()
    assert nesting_depth_exceeds(data, limit) == (depth(value) > limit)
    # msgspec's compact form escapes differently from json.dumps: the scan must agree on it too.
    assert nesting_depth_exceeds(msgspec.json.encode(value), limit) == (depth(value) > limit)


# -- salvage ------------------------------------------------------------------------------------

def test_salvage_ids_from_an_envelope_that_failed_validation() -> None:
    obj = {**valid_dict(), "attempt": 0, "payload": "not an object"}
    data = json.dumps(obj).encode()
    decode_error(data)
    got = salvage_ids(data)
    assert got == {k: obj[k] for k in ("id", "conversationId", "taskId", "sender", "recipient", "capability")}


def test_salvage_keeps_only_well_formed_ids() -> None:
    data = json.dumps({
        "id": "ok-1", "conversationId": "a.b.>", "taskId": 7, "sender": "lb.*.>",
        "replyTo": "good_reply", "recipient": "UPPER", "capability": "x..y",
    }).encode()
    assert salvage_ids(data) == {"id": "ok-1", "replyTo": "good_reply"}
    assert salvage_ids(json.dumps({"id": "a\n", "sender": "evil\n", "taskId": "t"}).encode()) == {"taskId": "t"}


def test_salvage_keeps_only_ids_the_error_envelope_can_carry() -> None:
    # Rejected for its over-long capability: an ERROR that copied it would fail the schema in turn.
    obj = {**valid_dict(), "capability": "a." + "b" * 200}
    data = json.dumps(obj).encode()
    decode_error(data)
    got = salvage_ids(data)
    assert "capability" not in got and got["id"] == obj["id"]
    error = {**valid_dict(), **got, "action": "ERROR", "error": {"code": "INVALID_MESSAGE", "message": "m"}}
    Codec().decode(json.dumps(error).encode())


@pytest.mark.parametrize("data", [b"", b"{", b"[1,2]", b"null", b"[" * 100_000, b'"id"'])
def test_salvage_never_raises(data: bytes) -> None:
    assert salvage_ids(data) == {}


def test_salvage_of_oversized_input_reads_only_its_head() -> None:
    # Too large to parse, but its sender is near the start: the ERROR can still reach it.
    data = json.dumps({"id": "a", "pad": "x" * 100}).encode()
    assert salvage_ids(data, max_bytes=50) == {"id": "a"}
    assert salvage_ids(data) == {"id": "a"}
    late = json.dumps({"pad": "x" * 5000, "id": "a", "sender": "s"}).encode()
    assert salvage_ids(late, max_bytes=50) == {}  # past the bounded head: never read


# -- the one-pass id check agrees with the field patterns --------------------------------------

_PATTERNED = {"id": tokens, "conversationId": tokens, "taskId": tokens, "sender": addresses,
              "recipient": addresses, "capability": capabilities, "causationId": tokens, "replyTo": addresses}
# Near misses: the wrong case, separators the joined check uses, lengths at and past each limit.
near_misses = st.text(alphabet=st.sampled_from(list("aZ09_-. \n\t*>é")), max_size=12) | st.sampled_from(
    ["", "-", " ", "a b", "a\n", "A", "x" * 64, "x" * 65, "x" * 128, "x" * 129, "a." * 63 + "a", "a." * 64 + "a"])


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_decode_accepts_exactly_what_the_field_patterns_accept(data: st.DataObject) -> None:
    obj = valid_dict()
    for field, valid in _PATTERNED.items():
        obj[field] = data.draw(valid | st.none() if field in ("causationId", "replyTo") else valid, label=field)
    # One field a near miss at a time: two bad fields would hide each other's verdict.
    obj[data.draw(st.sampled_from(list(_PATTERNED)), label="field")] = data.draw(near_misses, label="value")
    raw = json.dumps(obj).encode()
    try:
        expected: Envelope | None = msgspec.json.decode(raw, type=Envelope)  # every pattern, one by one
    except msgspec.ValidationError:
        expected = None
    if expected is None:
        decode_error(raw)
    else:
        got = codec.decode(raw)
        assert type(got) is Envelope and got == expected


def test_capability_length_limit_holds_in_the_one_pass_check() -> None:
    ok = "a." * 63 + "ab"  # 128 characters
    assert len(ok) == 128 and codec.decode(json.dumps({**valid_dict(), "capability": ok}).encode()).capability == ok
    assert decode_error({**valid_dict(), "capability": ok + "c"}).path == "$.capability"


def test_the_one_pass_decode_is_in_use_here() -> None:
    from ledgerbus.schemas import codec as codec_module

    assert codec_module._FAST  # else the tests above only compare msgspec with itself


def test_envelopes_and_task_states_are_left_to_reference_counting():
    """A replay decodes and folds a million envelopes: the cycle collector must not track and walk
    each one (gc=False). Their payloads stay ordinary dicts, collected like any other."""
    import gc

    from ledgerbus.eventstore.base import StoredEvent
    from ledgerbus.eventstore.fold import fold
    from ledgerbus.schemas.envelope import StoredEnvelope

    req = new_request(sender="a", recipient="b", capability="b.do", payload={"nested": {"list": [1, 2]}})
    failed = answer(req, Action.ERROR, error=ErrorInfo(code="X", message="m", details={"k": [1]}))
    codec = Codec()
    env, err_env = codec.decode(codec.encode(req)), codec.decode(codec.encode(failed))
    stored = msgspec.json.decode(codec.encode(req), type=StoredEnvelope)
    task = fold([env, err_env]).tasks[req.task_id]
    for obj in (env, err_env, err_env.error, stored, StoredEvent(1, env, b""), task):
        assert not gc.is_tracked(obj), type(obj).__name__
    assert gc.is_tracked(env.payload)


# -- duplicate keys -----------------------------------------------------------------------------


def _dup(raw: bytes, old: bytes, new: bytes) -> bytes:
    assert old in raw
    return raw.replace(old, new, 1)


_REQ = new_request(sender="client", recipient="worker", capability="work.do", payload={"i": 1, "url": "http://x/y"})
_RAW = Codec().encode(_REQ)


@pytest.mark.parametrize("data, path", [
    # The first value breaks a pattern the pattern-free twin does not check: one decoder took it, one refused.
    (b'{"sender":"Bad Sender",' + _RAW[1:], "$.sender"),
    (b'{"sender":"evil",' + _RAW[1:], "$.sender"),
    (_dup(_RAW, b'"sender":"client"', b'"sender":"client","sender":"Bad Sender"'), "$.sender"),
    (b'{"attempt":0,' + _RAW[1:], "$.attempt"),
    (_dup(_RAW, b'{"i":1', b'{"i":1,"i":2'), "$.payload.i"),
    # The same key spelled with an escape, and a colon escape that would hide the extra key from a count.
    (b'{"se\\u006eder":"x",' + _RAW[1:], "$.sender"),
    (_dup(_RAW, b'{"i":1', b'{"note":"a\\u003ab","i":0,"i":1'), "$.payload.i"),
    (_dup(_RAW, b'{"i":1', b'{"i":{"k":1,"k":2}'), "$.payload.i.k"),
    (_dup(_RAW, b'"error":null', b'"error":{"code":"X","message":"m","code":"Y"}'), "$.error.code"),
])
def test_a_repeated_key_is_refused_naming_it(data: bytes, path: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        Codec().decode(data)
    assert info.value.code == "INVALID_MESSAGE"
    assert info.value.path == path
    assert "duplicate key" in info.value.reason and repr(path.rsplit(".", 1)[1]) in info.value.reason


@pytest.mark.parametrize("data", [
    _RAW.replace(b'",', b'", ').replace(b'":', b'" : '),  # another encoder's spacing
    _dup(_RAW, b'"http://x/y"', b'"http\\u003a//x/y"'),  # a colon written as an escape
    _dup(_RAW, b'{"i":1', b'{"i":{"i":1,"sender":2},"j":[{"i":1},{"i":2}]'),  # the same key in other objects
])
def test_the_same_key_in_different_objects_or_other_spellings_is_fine(data: bytes) -> None:
    assert Codec().decode(data).id == _REQ.id


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(payload=payloads)
def test_no_envelope_an_encoder_writes_is_refused_for_duplicates(payload: dict[str, Any]) -> None:
    env = new_request(sender="a", recipient="b", capability="b.do", payload=payload)
    spaced = json.dumps(json.loads(Codec().encode(env)), indent=1)  # other bytes: the slow check runs
    assert Codec().decode(spaced.encode()) == Codec().decode(Codec().encode(env))


def test_a_value_error_before_broken_json_is_reported_as_before() -> None:
    # The typed decode stops at the bad value; the duplicate check must not trip over the rest.
    with pytest.raises(InvalidMessage) as info:
        Codec().decode(b'{"attempt":0} trailing')
    assert info.value.code == "INVALID_MESSAGE" and "duplicate" not in info.value.reason
