"""The plan in the ledger: the orchestrator tells the requester its plan in a PROGRESS on the root task.

The ledger holds requests, not the plan's edges; viewers used to read the order off timing, which cannot
tell a fan-in from steps that merely finished before the next began. The wire contract has no field for
them (an envelope has no other keys, and a REQUEST's payload is its capability's input), but a PROGRESS
payload is any object, and the conductor answering its own root REQUEST is an answer the fold accepts.

    {"plan": [{"step": "fetch", "capability": "web.fetch", "dependsOn": []},
              {"step": "merge", "capability": "text.merge", "dependsOn": ["fetch", "search"]}, …]}

Sent once a conversation is planned, for plans of two steps or more (one step has no edges). Its id is
derived from the root's, so the same note sent again by a resumed conductor is a duplicate JetStream and
the stores drop. Ledgers written before it have no note: readers then go on inferring the order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from ledgerbus.orchestrator.plan import Plan
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import Envelope, answer

KEY = "plan"


def note_id(root_id: str) -> str:
    return hashlib.blake2b(f"plan:{root_id}".encode(), digest_size=16).hexdigest()


def payload(plan: Plan) -> dict[str, Any] | None:
    """The note's payload (pure); None for a one-step plan."""
    if len(plan) < 2:
        return None
    return {KEY: [{"step": step, "capability": plan.step(step).capability, "dependsOn": list(deps)}
                  for step, deps in plan.dependencies().items()]}


def plan_note(root: Envelope, plan: Plan, sender: str) -> Envelope | None:
    """The PROGRESS recording `plan` on the root task, from its conductor `sender`; None for one step."""
    body = payload(plan)
    if body is None:
        return None
    return msgspec.structs.replace(answer(root, Action.PROGRESS, sender=sender, payload=body), id=note_id(root.id))


def recorded(envelopes: Iterable[Envelope]) -> dict[str, tuple[str, ...]] | None:
    """The dependencies a conversation's note recorded (step -> the steps it depends on), None without one.

    Only the note on the root task from its conductor (the root REQUEST's recipient) counts: anyone may
    publish a PROGRESS, and a forged plan must not redraw the graph."""
    root: Envelope | None = None
    for env in envelopes:
        if root is None:
            if env.action is Action.REQUEST:
                root = env
            continue
        if (env.action is Action.PROGRESS and env.task_id == root.task_id and env.sender == root.recipient
                and env.causation_id == root.id and KEY in env.payload):
            return _parse(env.payload.get(KEY))
    return None


def _parse(value: object) -> dict[str, tuple[str, ...]] | None:
    if not isinstance(value, list):
        return None
    out: dict[str, tuple[str, ...]] = {}
    for item in value:
        if not isinstance(item, Mapping) or not isinstance(item.get("step"), str):
            return None
        deps = item.get("dependsOn") or []
        if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
            return None
        out[item["step"]] = tuple(deps)
    return out
