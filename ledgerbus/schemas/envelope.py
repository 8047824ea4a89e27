"""The envelope: the one message shape every agent speaks (DESIGN.md, "The envelope")."""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec

from ledgerbus.ids import now_ms, uuid7
from ledgerbus.schemas.codes import Action

SCHEMA_VERSION = 1

#: Agent addresses and conversation ids become NATS subject tokens, so they must not contain
#: dots, wildcards or whitespace. `(?!\n)` because Python's `$` also matches before a trailing newline
#: ("research\n" would pass, then break the subject it is put in); in ECMA-262, the dialect of the
#: exported JSON Schema, it changes nothing, so both sides accept exactly the same strings.
ADDRESS_PATTERN = r"^[a-z0-9_-]{1,64}(?!\n)$"
TOKEN_PATTERN = r"^[A-Za-z0-9_-]{1,128}(?!\n)$"
CAPABILITY_PATTERN = r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*(?!\n)$"

Address = Annotated[str, msgspec.Meta(pattern=ADDRESS_PATTERN, description="agent address")]
Token = Annotated[str, msgspec.Meta(pattern=TOKEN_PATTERN)]
CapabilityName = Annotated[str, msgspec.Meta(pattern=CAPABILITY_PATTERN, max_length=128)]

#: JavaScript's Number.MAX_SAFE_INTEGER. The contract is shared with TypeScript agents, and a bigger
#: number would not fit the SQLite mirror's INTEGER columns either (one such envelope stopped the recorder).
MAX_SAFE_INTEGER = 2**53 - 1
Millis = Annotated[int, msgspec.Meta(ge=0, le=MAX_SAFE_INTEGER, description="unix time in milliseconds")]

_address_re = re.compile(ADDRESS_PATTERN)
_token_re = re.compile(TOKEN_PATTERN)


# gc=False on the types decoded or built once per message (here, StoredEvent and the fold's TaskState):
# the cycle collector neither tracks nor walks them, which a replay of a million envelopes or an agent's
# steady stream would otherwise pay for in collections (5% of a replay; 2.5x when decoded envelopes are
# kept in a list). Safe because none of them can reach itself: their fields are strings, numbers and
# decoded JSON, and a payload that held its own envelope would have to be built that way on purpose.
class ErrorInfo(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, gc=False):
    """What went wrong, with a code a program can branch on and a message a person can act on."""

    code: str
    message: str
    retryable: bool = False
    details: dict[str, Any] = msgspec.field(default_factory=dict)


class Envelope(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True, gc=False):
    """A ledgerbus message: sender, recipient, action, payload and the ids that tie a conversation together."""

    id: Token
    conversation_id: Token
    task_id: Token
    sender: Address
    recipient: Address
    action: Action
    capability: CapabilityName
    payload: dict[str, Any] = msgspec.field(default_factory=dict)
    causation_id: Token | None = None
    reply_to: Address | None = None
    attempt: Annotated[int, msgspec.Meta(ge=1, le=MAX_SAFE_INTEGER)] = 1
    deadline: Millis | None = None
    idempotency_key: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    timestamp: Millis = 0
    error: ErrorInfo | None = None
    traceparent: str | None = None
    schema_version: Annotated[int, msgspec.Meta(ge=1, le=MAX_SAFE_INTEGER)] = SCHEMA_VERSION

    @property
    def answer_to(self) -> str:
        """Where answers to this envelope go."""
        return self.reply_to or self.sender

    @property
    def key(self) -> str:
        """The idempotency key, defaulting to the task id as DESIGN.md says."""
        return self.idempotency_key or self.task_id


class StoredEnvelope(Envelope, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """Envelope's twin without the pattern checks on ids and addresses: the same fields and wire form.

    A store's replay decodes into it bytes it validated on the way in (re-running the regexes was
    most of a replay's decode time; tampering is `verify`'s job). The codec decodes into it too and
    then checks the ids and addresses in one pass (`ids_valid`) before it calls the result an Envelope.
    """

    id: str
    conversation_id: str
    task_id: str
    sender: str
    recipient: str
    capability: str
    causation_id: str | None = None
    reply_to: str | None = None


def _body(pattern: str) -> str:
    """A field pattern without its anchors: `^...(?!\\n)$` -> `...` (fullmatch anchors the whole)."""
    assert pattern.startswith("^") and pattern.endswith(r"(?!\n)$"), pattern
    return pattern[1:-len(r"(?!\n)$")]


_TOKEN, _ADDRESS, _CAPABILITY = _body(TOKEN_PATTERN), _body(ADDRESS_PATTERN), _body(CAPABILITY_PATTERN)
# The eight patterned fields joined by spaces, which none of them may contain: one regex call where
# msgspec runs one per field (2.3 µs of a 2.8 µs decode). Absent optional ids stand in as "-", valid in both.
_IDS = re.compile(" ".join([_TOKEN, _TOKEN, _TOKEN, _ADDRESS, _ADDRESS, f"(?=[^ ]{{1,128}} ){_CAPABILITY}",
                            _TOKEN, _ADDRESS]))


def ids_valid(env: Envelope) -> bool:
    """True when every id and address of `env` matches its field's pattern (as Envelope's decode checks)."""
    cause, reply = env.causation_id, env.reply_to
    return _IDS.fullmatch(
        f"{env.id} {env.conversation_id} {env.task_id} {env.sender} {env.recipient} {env.capability}"
        f" {'-' if cause is None else cause} {'-' if reply is None else reply}"
    ) is not None


def new_request(
    *,
    sender: str,
    recipient: str,
    capability: str,
    payload: dict[str, Any],
    conversation_id: str | None = None,
    task_id: str | None = None,
    attempt: int = 1,
    deadline: int | None = None,
    idempotency_key: str | None = None,
    reply_to: str | None = None,
    causation_id: str | None = None,
) -> Envelope:
    eid = uuid7()
    task = task_id or eid
    return Envelope(
        id=eid,
        conversation_id=conversation_id or eid,
        task_id=task,
        causation_id=causation_id,
        sender=sender,
        recipient=recipient,
        reply_to=reply_to,
        action=Action.REQUEST,
        capability=capability,
        payload=payload,
        attempt=attempt,
        deadline=deadline,
        idempotency_key=idempotency_key or task,
        timestamp=now_ms(),
    )


def answer(
    request: Envelope,
    action: Action,
    *,
    sender: str | None = None,
    payload: dict[str, Any] | None = None,
    error: ErrorInfo | None = None,
) -> Envelope:
    """An envelope answering `request` (ACK/PROGRESS/RESPONSE/ERROR), addressed to its reply address."""
    return Envelope(
        id=uuid7(),
        conversation_id=request.conversation_id,
        task_id=request.task_id,
        causation_id=request.id,
        sender=sender or request.recipient,
        recipient=request.answer_to,
        action=action,
        capability=request.capability,
        payload=payload or {},
        attempt=request.attempt,
        deadline=request.deadline,
        idempotency_key=request.key,
        timestamp=now_ms(),
        error=error,
        traceparent=request.traceparent,
    )


def is_address(value: str) -> bool:
    return bool(_address_re.match(value))


def is_token(value: str) -> bool:
    return bool(_token_re.match(value))
