"""What the conversation list shows of one conversation, and whether it matches the list's filters. Pure."""

from __future__ import annotations

import msgspec

from ledgerbus.eventstore.fold import ConversationState


class Summary(msgspec.Struct, frozen=True):
    conversation_id: str
    status: str
    capability: str
    started_at: int | None
    duration_ms: int | None
    tasks: int
    retries: int
    errors: int
    agents: tuple[str, ...]
    error_codes: tuple[str, ...]
    first_position: int
    last_position: int


class Filters(msgspec.Struct, frozen=True, kw_only=True):
    status: str = ""
    capability: str = ""
    agent: str = ""
    error_code: str = ""
    since_ms: int | None = None
    until_ms: int | None = None
    prefix: str = ""

    @property
    def empty(self) -> bool:
        return self == Filters()


def summarize(st: ConversationState, first_position: int) -> Summary:
    subtasks = st.subtasks
    codes: set[str] = set()
    errors = 0
    for t in st.tasks.values():
        if t.error is not None:
            codes.add(t.error.code)
            errors += 1
        codes.update(d.code for d in t.decisions)
    if st.error is not None:
        codes.add(st.error.code)
    return Summary(
        conversation_id=st.conversation_id, status=st.status.value, capability=st.capability or "",
        started_at=st.started_at, duration_ms=st.duration_ms, tasks=len(subtasks),
        retries=sum(max(t.attempts - 1, 0) for t in subtasks), errors=errors,
        agents=tuple(sorted({t.agent for t in subtasks})), error_codes=tuple(sorted(codes)),
        first_position=first_position, last_position=st.last_position)


def matches(s: Summary, f: Filters) -> bool:
    if f.status and s.status != f.status.upper():
        return False
    if f.capability and f.capability != s.capability:
        return False
    if f.agent and f.agent not in s.agents:
        return False
    if f.error_code and f.error_code.upper() not in s.error_codes:
        return False
    if f.prefix and not s.conversation_id.startswith(f.prefix):
        return False
    if f.since_ms is not None and (s.started_at is None or s.started_at < f.since_ms):
        return False
    if f.until_ms is not None and (s.started_at is None or s.started_at > f.until_ms):
        return False
    return True


#: The orchestrator's decisions, said in words (the ledger holds the code and its own message beside it).
DECISION_WORDS = {
    "RETRY_SCHEDULED": "retry scheduled",
    "RATE_LIMITED": "held back by the rate limiter",
    "STALLED": "declared stalled: acknowledged, then silent",
    "TIMED_OUT": "timed out",
    "NO_RECEIPT": "no agent took the request",
    "DEADLINE_EXCEEDED": "deadline passed",
    "BREAKER_OPEN": "circuit breaker open: not sent",
    "FALLBACK_USED": "fallback used",
    "DEPENDENCY_FAILED": "skipped: a dependency failed",
    "CANCELLED": "cancelled",
}


def in_words(code: str) -> str:
    return DECISION_WORDS.get(code, code.lower().replace("_", " "))
