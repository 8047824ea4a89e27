"""An answer counts only from whom it was asked: what the fold refuses, and that it says so."""

from __future__ import annotations

import msgspec

from ledgerbus.eventstore.fold import ConversationStatus, TaskStatus, fold
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import ErrorInfo

from ledger_histories import ORCH, History

S = TaskStatus
C = ConversationStatus


def _reasons(h: History) -> list[tuple[str, str, str]]:
    return [(i.envelope_id, i.sender, i.reason) for i in fold(h.events).ignored]


def test_an_agent_answering_another_agents_task_is_ignored() -> None:
    h = History()
    root = h.root()
    research = h.request("conv1_a", "research")
    h.response(research, {"notes": ["n"]})
    writing = h.request("conv1_b", "writing", capability="writing.draft")
    # research knows (or guesses) the id of writing's REQUEST and answers it itself
    forged = h.response(writing, {"article": "research's choice"}, sender="research")
    forged_ack = h.ack(writing, sender="research")
    st = fold(h.events)
    assert st.tasks["conv1_b"].status is S.SENT and st.tasks["conv1_b"].result is None
    assert [i.envelope_id for i in st.ignored] == [forged.id, forged_ack.id]
    assert all("addressed to writing" in i.reason for i in st.ignored)
    assert [i.position for i in st.ignored] == [6, 7]
    h.response(writing, {"article": "writing's own"})
    h.finish(root)
    st = fold(h.events)
    assert st.tasks["conv1_b"].status is S.DONE and st.tasks["conv1_b"].result == {"article": "writing's own"}
    assert st.status is C.DONE


def test_an_answer_must_name_its_request() -> None:
    h = History()
    h.root()
    req = h.request("s1", "writing")
    other = h.request("s2", "writing")
    # right sender, but the causation names another task's REQUEST, or none at all
    crossed = msgspec.structs.replace(h.response(other, record=False), task_id="s1", id="x1")
    uncaused = msgspec.structs.replace(h.response(req, record=False), causation_id=None, id="x2")
    wrong_attempt = msgspec.structs.replace(h.response(req, record=False), attempt=2, id="x3")
    h.envelopes += [crossed, uncaused, wrong_attempt]
    st = fold(h.events)
    assert st.tasks["s1"].status is S.SENT
    reasons = {i.envelope_id: i.reason for i in st.ignored}
    assert set(reasons) == {"x1", "x2", "x3"}
    assert "answers no REQUEST of task s1" in reasons["x1"] and "causation None" in reasons["x2"]
    assert "claims attempt 2" in reasons["x3"]


def test_a_forged_root_response_is_ignored_and_the_conductors_stands() -> None:
    h = History()
    root = h.root()
    step = h.request("s1", "research")
    h.response(step)
    forged = h.response(root, {"status": "DONE", "result": {"title": "forged"}}, sender="research")
    st = fold(h.events)
    assert st.status is C.RUNNING and st.result is None
    assert [(i.envelope_id, i.sender) for i in st.ignored] == [(forged.id, "research")]
    real = h.finish(root)
    st = fold(h.events)
    assert st.status is C.DONE and st.result == real.payload


def test_a_second_copy_of_an_envelope_id_is_ignored() -> None:
    h = History()
    req = h.request("t1", "research")
    h.ack(req)
    progress = h.progress(req)
    h.envelopes.append(progress)  # replayed beyond the ledger's duplicate window
    st = fold(h.events)
    assert st.tasks["t1"].progress == 1
    assert [(i.envelope_id, i.position) for i in st.ignored] == [(progress.id, 4)]
    assert st.ignored[0].reason.startswith("duplicate")


def test_a_stranger_cannot_retry_a_task_to_itself() -> None:
    h = History()
    h.root()
    writing = h.request("conv1_b", "writing")
    hijack = h.request("conv1_b", "research", attempt=2, sender="research")
    answer = h.response(hijack, {"article": "research's choice"})
    st = fold(h.events)
    t = st.tasks["conv1_b"]
    assert (t.status, t.agent, t.attempt, t.request_id) == (S.SENT, "writing", 1, writing.id)
    assert [i.envelope_id for i in st.ignored] == [hijack.id, answer.id]
    assert "which orchestrator asked" in st.ignored[0].reason


def test_the_conductor_takes_over_a_task_someone_asked_before_it() -> None:
    # Task ids are predictable: research asks (itself) for writing's step before the orchestrator does.
    h = History()
    root = h.root()
    early = h.request("conv1_b", "research", sender="research")
    h.response(early, {"article": "research's choice"})
    assert fold(h.events).tasks["conv1_b"].status is S.DONE
    real = h.request("conv1_b", "writing")
    st = fold(h.events)
    t = st.tasks["conv1_b"]
    assert (t.status, t.agent, t.requester, t.request_id, t.result, t.attempts) == (S.SENT, "writing", ORCH, real.id, None, 1)
    assert "takes it over" in st.ignored[-1].reason
    h.response(real, {"article": "writing's own"})
    h.finish(root)
    st = fold(h.events)
    assert st.tasks["conv1_b"].result == {"article": "writing's own"} and st.status is C.DONE


def test_decisions_count_from_the_conductor_and_the_asker_only() -> None:
    h = History()
    h.root()
    req = h.request("s1", "writing")
    h._answer(req, Action.ERROR, sender="research", recipient="research", error=ErrorInfo(code="STALLED", message="m"))
    assert fold(h.events).tasks["s1"].status is S.SENT
    h.decision(req, "STALLED", retryable=True)
    assert fold(h.events).tasks["s1"].status is S.STALLED
