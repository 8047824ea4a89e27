"""Hand-written ledger histories for the fold and stall tests: deterministic ids, clock and positions.

Envelopes are built the way the engine and the agent runtime build them (an orchestrator decision is an
ERROR from `orchestrator` addressed to itself; an agent's answers go to the requester), but with a clock
the test controls, so timings in assertions are exact.
"""

from __future__ import annotations

from typing import Any

from ledgerbus.eventstore.base import StoredEvent
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import Envelope, ErrorInfo

ORCH = "orchestrator"
CLIENT = "client"


class History:
    """Builds one conversation's envelopes in ledger order; `events` are positioned like the store's."""

    def __init__(self, conversation_id: str = "conv1", *, start_ms: int = 1_000_000, step_ms: int = 100) -> None:
        self.cid = conversation_id
        self.now = start_ms
        self.step_ms = step_ms
        self.envelopes: list[Envelope] = []
        self._n = 0

    # -- plumbing -------------------------------------------------------------------------------

    def _id(self) -> str:
        self._n += 1
        return f"{self.cid}-e{self._n}"

    def at(self, ms: int) -> "History":
        """Move the clock to an absolute time (the next envelope gets it)."""
        self.now = ms
        return self

    def wait(self, ms: int) -> "History":
        self.now += ms
        return self

    def _add(self, env: Envelope, record: bool) -> Envelope:
        if record:
            self.envelopes.append(env)
        self.now += self.step_ms
        return env

    @property
    def events(self) -> list[StoredEvent]:
        return [StoredEvent(i + 1, e) for i, e in enumerate(self.envelopes)]

    # -- envelopes ------------------------------------------------------------------------------

    def request(self, task_id: str, agent: str, *, capability: str = "research.search", attempt: int = 1,
                sender: str = ORCH, payload: dict[str, Any] | None = None, deadline: int | None = None,
                record: bool = True) -> Envelope:
        return self._add(Envelope(
            id=self._id(), conversation_id=self.cid, task_id=task_id, sender=sender, recipient=agent,
            action=Action.REQUEST, capability=capability, payload=payload or {"topic": task_id},
            attempt=attempt, deadline=deadline, idempotency_key=task_id, timestamp=self.now,
        ), record)

    def root(self, capability: str = "content.article", task_id: str = "root") -> Envelope:
        req = self.request(task_id, ORCH, capability=capability, sender=CLIENT, payload={"topic": "bees"})
        self.ack(req)
        return req

    def _answer(self, req: Envelope, action: Action, *, sender: str | None = None, recipient: str | None = None,
                payload: dict[str, Any] | None = None, error: ErrorInfo | None = None,
                record: bool = True) -> Envelope:
        return self._add(Envelope(
            id=self._id(), conversation_id=self.cid, task_id=req.task_id, causation_id=req.id,
            sender=sender or req.recipient, recipient=recipient or req.answer_to, action=action,
            capability=req.capability, payload=payload or {}, attempt=req.attempt, deadline=req.deadline,
            idempotency_key=req.key, timestamp=self.now, error=error,
        ), record)

    def ack(self, req: Envelope, **kw: Any) -> Envelope:
        return self._answer(req, Action.ACK, payload={"instance": f"{req.recipient}-1"}, **kw)

    def progress(self, req: Envelope, **kw: Any) -> Envelope:
        return self._answer(req, Action.PROGRESS, payload={"stage": "working"}, **kw)

    def response(self, req: Envelope, payload: dict[str, Any] | None = None, **kw: Any) -> Envelope:
        return self._answer(req, Action.RESPONSE, payload=payload or {"result": req.task_id}, **kw)

    def error(self, req: Envelope, code: str = "HANDLER_ERROR", *, retryable: bool = False, **kw: Any) -> Envelope:
        """An ERROR from the agent that got `req`."""
        err = ErrorInfo(code=code, message=f"{code} from {req.recipient}", retryable=retryable)
        return self._answer(req, Action.ERROR, error=err, **kw)

    def decision(self, req: Envelope, code: str, *, retryable: bool = False, record: bool = True) -> Envelope:
        """An orchestrator decision about `req`'s task: an ERROR from the orchestrator to itself."""
        err = ErrorInfo(code=code, message=f"decided {code}", retryable=retryable)
        return self._answer(req, Action.ERROR, sender=ORCH, recipient=ORCH, error=err, record=record)

    def fallback(self, req: Envelope, payload: dict[str, Any] | None = None) -> Envelope:
        err = ErrorInfo(code="FALLBACK_USED", message="fallback value used after STALLED")
        return self._answer(req, Action.RESPONSE, sender=ORCH, recipient=ORCH,
                            payload=payload or {"fallback": True}, error=err)

    def finish(self, root: Envelope, *, degraded: str | None = None, failed: str | None = None) -> Envelope:
        """The orchestrator's final answer to the client: DONE, DEGRADED (a RESPONSE with an error) or FAILED."""
        if failed is not None:
            return self._answer(root, Action.ERROR, error=ErrorInfo(code="DEPENDENCY_FAILED", message=failed))
        err = ErrorInfo(code="DEGRADED", message=degraded) if degraded else None
        status = "DEGRADED" if degraded else "DONE"
        return self._answer(root, Action.RESPONSE, payload={"status": status, "result": {"title": "t"}}, error=err)
