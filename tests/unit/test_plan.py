from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledgerbus.errors import ConfigError
from ledgerbus.orchestrator.aggregate import Outcome
from ledgerbus.orchestrator.plan import (
    Decomposer,
    Plan,
    PlanContext,
    SingleStepDecomposer,
    Step,
)


def s(id: str, *deps: str, optional: bool = False) -> Step:
    return Step(id, f"cap.{id}", {"step": id}, depends_on=deps, optional=optional)


def ids(steps: list[Step]) -> list[str]:
    return [step.id for step in steps]


# research -> (search, fetch) -> summarize -> review ; "notes" is optional and feeds review
def research_plan() -> Plan:
    return Plan([
        s("search"), s("fetch"), s("notes", optional=True),
        s("summarize", "search", "fetch"), s("review", "summarize", "notes"),
    ])


# --- validation --------------------------------------------------------------------------------

def test_duplicate_ids_are_named() -> None:
    with pytest.raises(ConfigError, match="'a'"):
        Plan([s("a"), s("b"), s("a")])


def test_unknown_dependencies_are_named() -> None:
    with pytest.raises(ConfigError, match="'b'.*'ghost'"):
        Plan([s("a"), s("b", "ghost")])


def test_cycles_are_named() -> None:
    with pytest.raises(ConfigError, match="cycle") as err:
        Plan([s("x"), s("a", "c"), s("b", "a"), s("c", "b")])
    message = str(err.value)
    assert all(f"'{i}'" in message for i in "abc") and "'x'" not in message


def test_self_dependency_is_a_cycle() -> None:
    with pytest.raises(ConfigError, match="cycle.*'a' depends on 'a'"):
        Plan([s("a", "a")])


def test_empty_plan_is_refused() -> None:
    with pytest.raises(ConfigError):
        Plan([])


@pytest.mark.parametrize("kwargs", [
    {"id": ""}, {"capability": ""}, {"input": [1, 2]}, {"depends_on": "ab"},
    {"depends_on": ("a", "a")},
])
def test_step_validation(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"id": "s", "capability": "c", "input": {}, **kwargs}
    with pytest.raises(ConfigError):
        Step(**args)


def test_depends_on_lists_become_tuples() -> None:
    assert Step("s", "c", {}, depends_on=["a"]).depends_on == ("a",)  # type: ignore[arg-type]


# --- order and readiness -----------------------------------------------------------------------

def test_order_is_topological_and_stable() -> None:
    plan = Plan([s("late", "early"), s("x"), s("early"), s("y")])
    assert ids(plan.order()) == ["x", "early", "late", "y"]
    assert ids(research_plan().order()) == ["search", "fetch", "notes", "summarize", "review"]


def test_ready_walks_the_plan() -> None:
    plan = research_plan()
    assert ids(plan.ready(set(), set(), set())) == ["search", "fetch", "notes"]
    assert ids(plan.ready({"search"}, {"fetch"}, set())) == ["notes"]
    assert ids(plan.ready({"search", "fetch"}, {"notes"}, set())) == ["summarize"]
    assert ids(plan.ready({"search", "fetch", "summarize"}, {"notes"}, set())) == []
    assert ids(plan.ready({"search", "fetch", "summarize", "notes"}, set(), set())) == ["review"]
    assert plan.ready(set(plan_ids(plan)), set(), set()) == []


def plan_ids(plan: Plan) -> list[str]:
    return [step.id for step in plan]


def test_a_failed_required_dependency_blocks_transitively() -> None:
    plan = research_plan()
    assert ids(plan.blocked({"fetch"})) == ["summarize", "review"]
    assert ids(plan.ready({"search", "notes"}, set(), {"fetch"})) == []


def test_a_failed_optional_dependency_does_not_block() -> None:
    plan = research_plan()
    assert plan.blocked({"notes"}) == []
    assert ids(plan.ready({"search", "fetch", "summarize"}, set(), {"notes"})) == ["review"]


def test_an_optional_step_blocked_by_a_required_failure_does_not_block_further() -> None:
    plan = Plan([s("a"), s("opt", "a", optional=True), s("b"), s("c", "opt", "b")])
    assert ids(plan.blocked({"a"})) == ["opt"]
    assert ids(plan.ready({"b"}, set(), {"a"})) == ["c"]


def test_finished_and_outcome() -> None:
    plan = research_plan()
    everything = set(plan_ids(plan))
    assert not plan.finished({"search"}, set())
    with pytest.raises(ValueError):
        plan.outcome({"search"}, set())
    assert plan.outcome(everything, set()) is Outcome.DONE
    assert plan.outcome(everything - {"notes"}, {"notes"}) is Outcome.DEGRADED
    assert plan.outcome(everything, set(), fallback={"fetch"}) is Outcome.DEGRADED
    assert plan.finished({"search", "notes"}, {"fetch"})
    assert plan.outcome({"search", "notes"}, {"fetch"}) is Outcome.FAILED


# --- inputs ------------------------------------------------------------------------------------

def test_static_input_is_copied() -> None:
    plan = Plan([Step("a", "c", {"q": 1})])
    payload = plan.build_input(plan.step("a"), PlanContext({}, {}))
    payload["q"] = 2
    assert plan.build_input(plan.step("a"), PlanContext({}, {})) == {"q": 1}


def test_builders_see_the_request_and_earlier_results() -> None:
    def summarize_input(ctx: PlanContext) -> Mapping[str, Any]:
        return {"topic": ctx.request["topic"], "docs": ctx.results["search"]["hits"]}

    plan = Plan([Step("search", "research.search", {"q": "x"}),
                 Step("summarize", "research.summarize", summarize_input, ("search",))])
    ctx = PlanContext({"topic": "nats"}, {"search": {"hits": ["d1", "d2"]}})
    assert plan.build_input(plan.step("summarize"), ctx) == {"topic": "nats",
                                                             "docs": ["d1", "d2"]}


def test_a_builder_returning_a_non_mapping_is_a_config_error() -> None:
    plan = Plan([Step("a", "c", lambda ctx: ["not", "a", "dict"])])  # type: ignore[arg-type,return-value]
    with pytest.raises(ConfigError, match="'a'"):
        plan.build_input(plan.step("a"), PlanContext({}, {}))


def test_to_dict_is_json_and_names_builders() -> None:
    def make_input(ctx: PlanContext) -> Mapping[str, Any]:
        return {}

    plan = Plan([Step("a", "c", {"q": 1}), Step("b", "d", make_input, ("a",), optional=True)])
    data = json.loads(json.dumps(plan.to_dict()))
    assert data["steps"][0] == {"id": "a", "capability": "c", "depends_on": [],
                                "optional": False, "input": {"q": 1}}
    assert data["steps"][1]["input_builder"].endswith("make_input")
    assert data["steps"][1]["depends_on"] == ["a"] and data["steps"][1]["optional"]


def test_lookup() -> None:
    plan = research_plan()
    assert "fetch" in plan and "ghost" not in plan and len(plan) == 5
    with pytest.raises(KeyError):
        plan.step("ghost")


def test_single_step_decomposer() -> None:
    d = SingleStepDecomposer()
    assert isinstance(d, Decomposer)
    plan = d.plan("echo", {"text": "hi"})
    (step,) = plan.steps
    assert step.capability == "echo"
    assert plan.build_input(step, PlanContext({}, {})) == {"text": "hi"}


# --- properties over random DAGs ---------------------------------------------------------------

@st.composite
def dags(draw: st.DrawFn) -> Plan:
    n = draw(st.integers(min_value=1, max_value=15))
    deps = [draw(st.sets(st.integers(min_value=0, max_value=i - 1), max_size=4)) if i else set()
            for i in range(n)]
    optional = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    listing = draw(st.permutations(range(n)))  # steps need not be listed in dependency order
    return Plan([Step(f"s{i}", "c", {}, tuple(f"s{d}" for d in sorted(deps[i])), optional[i])
                 for i in listing])


@given(dags())
def test_order_respects_every_dependency(plan: Plan) -> None:
    order = ids(plan.order())
    assert sorted(order) == sorted(plan_ids(plan))
    position = {step_id: i for i, step_id in enumerate(order)}
    for step in plan:
        assert all(position[d] < position[step.id] for d in step.depends_on)


@given(dags(), st.data())
def test_running_a_plan_to_the_end(plan: Plan, data: st.DataObject) -> None:
    # Drive the plan like the orchestrator: start whatever is ready, settle it, repeat.
    done: set[str] = set()
    failed: set[str] = set()
    while ready := plan.ready(done, set(), failed):
        step = ready[0]
        dead = failed | set(ids(plan.blocked(failed)))
        for d in step.depends_on:  # never started before its dependencies settled
            assert d in done or (d in dead and plan.step(d).optional)
        if data.draw(st.booleans()):
            done.add(step.id)
        else:
            failed.add(step.id)
    assert plan.finished(done, failed)
    blocked = set(ids(plan.blocked(failed)))
    assert done | failed | blocked == set(plan_ids(plan))
    assert not (blocked & (done | failed))
    expected = (Outcome.FAILED if any(not plan.step(i).optional for i in failed | blocked)
                else Outcome.DEGRADED if failed else Outcome.DONE)
    assert plan.outcome(done, failed) is expected


@given(dags(), st.data())
def test_adding_a_back_edge_makes_a_cycle(plan: Plan, data: st.DataObject) -> None:
    order = plan.order()
    chains = [step for step in order if step.depends_on]
    if not chains:
        return
    step = data.draw(st.sampled_from(chains))
    dep = step.depends_on[0]
    # dep now also depends on step: dep -> step -> dep
    steps = [Step(x.id, x.capability, x.input, x.depends_on + ((step.id,) if x.id == dep else ()),
                  x.optional) for x in plan]
    with pytest.raises(ConfigError, match="cycle"):
        Plan(steps)


# --- fan-in policies on a step's dependencies ------------------------------------------------

from ledgerbus.orchestrator.aggregate import AnyOf, BestEffort, Quorum  # noqa: E402


def _fan(policy):
    return Plan([Step("r1", "r.x", {}), Step("r2", "r.x", {}), Step("r3", "r.x", {}),
                 Step("w", "w.x", {}, depends_on=("r1", "r2", "r3"), fan_in=policy)])


def test_quorum_starts_at_k_successes_and_blocks_when_out_of_reach():
    plan = _fan(Quorum(2))
    assert [s.id for s in plan.ready({"r1"}, {"r2", "r3"}, set())] == []
    assert [s.id for s in plan.ready({"r1", "r2"}, {"r3"}, set())] == ["w"]
    assert [s.id for s in plan.blocked({"r1"})] == []
    assert [s.id for s in plan.blocked({"r1", "r2"})] == ["w"]


def test_a_quorum_out_of_reach_from_the_start_is_blocked_with_nothing_failed():
    plan = _fan(Quorum(4))  # three dependencies can never make four successes
    blocked = plan.blocked(set())
    assert [s.id for s in blocked] == ["w"]
    blocked.clear()  # the answer is the caller's to keep: asking again gives it afresh
    assert [s.id for s in plan.blocked(set())] == ["w"]
    assert plan.finished({"r1", "r2", "r3"}, set())
    assert plan.ready(set(), set(), set()) == [plan.step("r1"), plan.step("r2"), plan.step("r3")]


def test_any_of_starts_at_the_first_success_and_best_effort_waits_for_all():
    assert [s.id for s in _fan(AnyOf()).ready({"r3"}, {"r1", "r2"}, set())] == ["w"]
    best = _fan(BestEffort())
    assert best.ready({"r1"}, {"r3"}, {"r2"}) == []
    assert [s.id for s in best.ready({"r1"}, set(), {"r2", "r3"})] == ["w"]
    assert [s.id for s in best.blocked({"r1", "r2", "r3"})] == ["w"]


def test_declared_capabilities_are_names_or_a_one_line_error() -> None:
    from ledgerbus.examples import ContentPipeline
    from ledgerbus.orchestrator.plan import declared_capabilities

    assert declared_capabilities(ContentPipeline()) == {"content.article"}
    assert declared_capabilities(SingleStepDecomposer(["a.b", "c"])) == {"a.b", "c"}

    class Bare:
        def plan(self, capability: str, request: Any) -> Plan:
            return Plan.single(capability, request)

    class Named:
        def __init__(self, caps: Any) -> None:
            self.capabilities = caps

    for bad, says in [(Bare(), "Bare has no `capabilities`"), (Named("a.b"), "must be a collection"),
                      (Named(["ok", "Not A Name"]), "'Not A Name', not a capability name"),
                      (Named([]), "declares no capabilities"), (SingleStepDecomposer(), "declares no capabilities")]:
        with pytest.raises(ConfigError, match=re.escape(says)):
            declared_capabilities(bad)
