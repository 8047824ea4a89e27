"""The content pipeline as a Temporal workflow and activities (imported only when Temporal runs)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import activity, workflow

from bench.peers import Json
from bench.peers import workload as w

TASK_QUEUE = "content-pipeline"
_TIMEOUT = timedelta(seconds=120)


@activity.defn
async def research(query: Json) -> Json:
    return w.research(query)


@activity.defn
async def write(req: Json) -> Json:
    return w.draft(req)


@activity.defn
async def edit(req: Json) -> Json:
    return w.edit(req)


ACTIVITIES = [research, write, edit]


@workflow.defn
class Pipeline:
    @workflow.run
    async def run(self, topic: str) -> Json:
        results = await asyncio.gather(*(
            workflow.execute_activity(research, q, start_to_close_timeout=_TIMEOUT)
            for q in w.research_queries(topic)))
        d = await workflow.execute_activity(write, w.draft_request(topic, list(results)), start_to_close_timeout=_TIMEOUT)
        edited = await workflow.execute_activity(edit, w.edit_request(d), start_to_close_timeout=_TIMEOUT)
        return w.article(topic, d, edited)
