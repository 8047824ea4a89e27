"""Issue 5: re-execute chosen tasks — finished ones too — live, within a budget, beside the originals."""

from __future__ import annotations

import asyncio
from collections import Counter

from orchestration_harness import FixedPlan, counting_agent, runtime, start_all, stop_all

from ledgerbus.eventstore.fold import TaskStatus, fold
from ledgerbus.eventstore.recorder import Recorder
from ledgerbus.orchestrator.engine import Orchestrator
from ledgerbus.orchestrator.plan import Step
from ledgerbus.orchestrator.policy import PolicySet, RateLimitPolicy
from ledgerbus.orchestrator.replaymodes import re_execute
from ledgerbus.schemas.capability import CapabilityRegistry

UNLIMITED = PolicySet(rate=RateLimitPolicy(global_rate=None, agent_rate=None))


async def test_rerun_finished_tasks_within_budget_leaves_the_originals(bus, ledger):
    reg, calls = CapabilityRegistry(), Counter()
    agent = runtime(counting_agent("job", lambda p, c: {"n": p["n"] * 10}, reg, calls), bus)
    steps = [Step("one", "job.work", {"n": 1}), Step("two", "job.work", {"n": 2})]
    async with Recorder(bus, ledger) as rec:
        await start_all([agent])
        async with Orchestrator(bus, decomposer=FixedPlan(steps), registry=reg, policies=UNLIMITED) as orch:
            result = await asyncio.wait_for(orch.run("test.run", {}), 10)
        await rec.catch_up()
        before = ledger.envelopes(result.conversation_id)
        one, two = (f"{result.conversation_id}_{s}" for s in ("one", "two"))

        report = await re_execute(bus, list(ledger.read()), max_requests=2, tasks=[one, two, one])
        await rec.catch_up()
        await stop_all([agent])

    assert report.refused and report.sent == 2  # the third re-run would exceed the budget
    assert sorted(report.reruns) == [one, two]
    assert all(s.status is TaskStatus.DONE for s in report.reruns.values())
    assert report.reruns[one].task_id == f"{one}_rerun1" and report.reruns[one].result == {"n": 10}
    assert calls[f"{one}_rerun1"] == 1 and calls[f"{two}_rerun1"] == 1  # really ran: fresh idempotency keys
    after = ledger.envelopes(result.conversation_id)
    assert after[: len(before)] == before  # the recorded conversation is untouched
    state = fold(after)
    assert state.tasks[one].status is TaskStatus.DONE and state.tasks[f"{one}_rerun1"].status is TaskStatus.DONE
    assert state.status is result.status  # the conversation's own outcome is what it was
