"""What a conversation returns: its status, the final result, and a report per step."""

from __future__ import annotations

from typing import Any

import msgspec

from ledgerbus.eventstore.fold import ConversationStatus
from ledgerbus.schemas.envelope import ErrorInfo


class StepReport(msgspec.Struct, kw_only=True, rename="camel"):
    """How one step of the plan went."""

    step: str
    task_id: str
    capability: str
    agent: str | None = None
    status: str  # DONE, FAILED, SKIPPED
    attempts: int = 0
    fallback: bool = False
    error: ErrorInfo | None = None


class ConversationOutcome(msgspec.Struct, kw_only=True, rename="camel"):
    """The orchestrator's RESPONSE payload: DONE, DEGRADED (with what succeeded and why the rest failed) or FAILED."""

    status: ConversationStatus  # never RUNNING: this is the conversation's end
    result: dict[str, Any] | None = None
    steps: list[StepReport] = msgspec.field(default_factory=list)
    reasons: list[str] = msgspec.field(default_factory=list)
