"""The plan recorded in the ledger (orchestrator/plannote.py): what is sent, and what a reader believes."""

from __future__ import annotations

from ledgerbus.eventstore.fold import fold
from ledgerbus.orchestrator.plan import Plan, Step
from ledgerbus.orchestrator.plannote import note_id, plan_note, recorded
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import answer, new_request

PLAN = Plan([Step("a", "x.do", {}), Step("b", "x.do", {}), Step("c", "x.do", {}, depends_on=("a", "b"))])


def test_the_note_records_every_edge_and_counts_as_the_conductors_progress() -> None:
    root = new_request(sender="client", recipient="orchestrator", capability="x.do", payload={})
    note = plan_note(root, PLAN, "orchestrator")
    assert note is not None and note.action is Action.PROGRESS and note.id == note_id(root.id)
    assert recorded([root, answer(root, Action.ACK), note]) == {"a": (), "b": (), "c": ("a", "b")}
    state = fold([root, answer(root, Action.ACK), note])
    assert state.ignored == [] and state.tasks[root.task_id].last_progress == note.payload
    assert plan_note(root, Plan([Step("only", "x.do", {})]), "orchestrator") is None  # one step: no edges


def test_a_plan_from_anyone_but_the_conductor_or_a_malformed_one_is_not_believed() -> None:
    root = new_request(sender="client", recipient="orchestrator", capability="x.do", payload={})
    forged = answer(root, Action.PROGRESS, sender="mallory", payload={"plan": [{"step": "a", "dependsOn": []}]})
    assert recorded([root, forged]) is None
    bad = answer(root, Action.PROGRESS, payload={"plan": [{"step": "a", "dependsOn": "b"}]})
    assert recorded([root, bad]) is None
    assert recorded([root, answer(root, Action.PROGRESS, payload={"done": 3})]) is None
    # Another progress of the conductor's before the plan does not hide it.
    note = plan_note(root, PLAN, "orchestrator")
    assert recorded([root, answer(root, Action.PROGRESS, payload={"done": 3}), note]) == PLAN.dependencies()
