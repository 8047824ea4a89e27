"""The content pipeline as DBOS workflow and steps (imported only when DBOS runs: decorating needs dbos)."""

from __future__ import annotations

import asyncio

from dbos import DBOS

from bench.peers import Json
from bench.peers import workload as w


@DBOS.step()
async def research(query: Json) -> Json:
    return w.research(query)


@DBOS.step()
async def write(req: Json) -> Json:
    return w.draft(req)


@DBOS.step()
async def edit(req: Json) -> Json:
    return w.edit(req)


@DBOS.workflow()
async def pipeline(topic: str) -> Json:
    results = await asyncio.gather(*(research(q) for q in w.research_queries(topic)))
    d = await write(w.draft_request(topic, list(results)))
    edited = await edit(w.edit_request(d))
    return w.article(topic, d, edited)
