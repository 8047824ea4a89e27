"""Actions and error codes of the wire contract."""

from __future__ import annotations

import enum


class Action(str, enum.Enum):
    REQUEST = "REQUEST"
    ACK = "ACK"
    PROGRESS = "PROGRESS"
    RESPONSE = "RESPONSE"
    ERROR = "ERROR"


class ErrorCode(str, enum.Enum):
    """Codes carried in `error.code`. Agents may use their own codes too; these are the ones ledgerbus emits."""

    INVALID_MESSAGE = "INVALID_MESSAGE"  # envelope or payload failed to decode/validate
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    PAYLOAD_TOO_DEEP = "PAYLOAD_TOO_DEEP"
    UNKNOWN_CAPABILITY = "UNKNOWN_CAPABILITY"
    UNKNOWN_AGENT = "UNKNOWN_AGENT"
    HANDLER_ERROR = "HANDLER_ERROR"  # the agent's handler raised
    INVALID_OUTPUT = "INVALID_OUTPUT"  # the handler returned something its schema refuses
    NO_RECEIPT = "NO_RECEIPT"  # no ACK within the receipt timeout
    STALLED = "STALLED"  # ACK, then silence for the stall window
    TIMED_OUT = "TIMED_OUT"  # no answer before the task timeout
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"  # request arrived after its deadline
    RETRY_SCHEDULED = "RETRY_SCHEDULED"
    BREAKER_OPEN = "BREAKER_OPEN"
    RATE_LIMITED = "RATE_LIMITED"
    FALLBACK_USED = "FALLBACK_USED"
    DEPENDENCY_FAILED = "DEPENDENCY_FAILED"
    DEAD_LETTER = "DEAD_LETTER"
    SPOOFED_SENDER = "SPOOFED_SENDER"
    CANCELLED = "CANCELLED"
    INTERNAL = "INTERNAL"


#: Codes whose cause may go away by itself, so the orchestrator may retry them.
RETRYABLE_CODES: frozenset[str] = frozenset(
    {
        ErrorCode.NO_RECEIPT.value,
        ErrorCode.STALLED.value,
        ErrorCode.TIMED_OUT.value,
        ErrorCode.RATE_LIMITED.value,
        ErrorCode.INTERNAL.value,
    }
)
