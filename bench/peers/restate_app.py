"""The content pipeline as a Restate service, served over HTTP/2 by hypercorn:
`python -m bench.peers.restate_app PORT` (a child of the trial; Restate calls it)."""

from __future__ import annotations

import asyncio
import sys

import restate

from bench.peers import Json
from bench.peers import workload as w

pipeline = restate.Service("Pipeline")


@pipeline.handler()
async def run(ctx: restate.Context, topic: str) -> Json:
    futures = [ctx.run_typed(f"research-{i}", w.research, query=q) for i, q in enumerate(w.research_queries(topic))]
    await restate.gather(*futures)
    results = [await f for f in futures]
    d = await ctx.run_typed("write", w.draft, req=w.draft_request(topic, results))
    edited = await ctx.run_typed("edit", w.edit, req=w.edit_request(d))
    return w.article(topic, d, edited)


app = restate.app(services=[pipeline])


def main() -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    cfg = Config()
    cfg.bind = [f"127.0.0.1:{int(sys.argv[1])}"]
    cfg.accesslog = None
    cfg.errorlog = None
    cfg.graceful_timeout = 0.5  # the server keeps its HTTP/2 connections open: don't wait them out on SIGTERM
    asyncio.run(serve(app, cfg))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
