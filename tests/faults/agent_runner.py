"""A worker agent in its own process, for fault tests: it dies (os._exit) at the point a request names.

    python agent_runner.py --url nats://… --db effects.db

Each request's payload says where to die: `before_ack`, `in_handler` (after ACK, before the effect),
`after_handler` (effect done, result not yet recorded), `after_result` (result recorded, RESPONSE not
sent), `before_jsack` (RESPONSE in the ledger, JetStream not acked), `always` (every delivery, while the
file named by `poison` exists) or `none`. Each point kills once per task (remembered in the db), so the
redelivery then goes through. Deliveries, handler executions and effects are counted in SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ledgerbus.agents.runtime import AgentRuntime  # noqa: E402
from ledgerbus.agents.sdk import Agent  # noqa: E402
from ledgerbus.bus.connection import Bus  # noqa: E402
from ledgerbus.bus.streams import ConsumerSettings  # noqa: E402
from ledgerbus.schemas.capability import CapabilityRegistry  # noqa: E402
from ledgerbus.schemas.codes import Action  # noqa: E402

SCHEMA = """
create table if not exists deliveries (task text, delivered int, at real);
create table if not exists executions (task text, at real);
create table if not exists effects_raw (task text);
create table if not exists effects (key text primary key, task text);
create table if not exists kills (task text, point text, primary key (task, point));
"""


class Log:
    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, timeout=10, isolation_level=None)
        self.db.execute("pragma journal_mode=wal")
        self.db.executescript(SCHEMA)

    def add(self, sql: str, *args: Any) -> None:
        self.db.execute(sql, args)

    def die_once(self, task: str, point: str) -> None:
        """Record the kill before dying (durably: autocommit), then die without any cleanup."""
        if self.db.execute("select 1 from kills where task=? and point=?", (task, point)).fetchone():
            return
        self.db.execute("insert into kills values (?, ?)", (task, point))
        os._exit(137)


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--prefix", default="lb")
    p.add_argument("--db", required=True)
    p.add_argument("--ack-wait", type=float, default=2.0)
    p.add_argument("--backoff", default="0.5,1.5")
    p.add_argument("--max-deliver", type=int, default=3)
    # A claim left by a runner that died in its handler is taken over once this lease has run out.
    p.add_argument("--claim-lease", type=float, default=1.0)
    args = p.parse_args()
    log = Log(args.db)
    kill_points: dict[str, str] = {}  # task id → where this task asks us to die

    agent = Agent("worker", registry=CapabilityRegistry())

    @agent.capability("work.do", input=dict, output=dict)
    async def work(inp: dict[str, Any], ctx: Any) -> dict[str, Any]:
        log.add("insert into executions values (?, ?)", ctx.task_id, time.time())
        if inp.get("kill") == "in_handler":
            log.die_once(ctx.task_id, "in_handler")
        log.add("insert into effects_raw values (?)", ctx.task_id)
        # The documented pattern for external effects: key them by the idempotency key.
        log.add("insert or ignore into effects values (?, ?)", ctx.idempotency_key, ctx.task_id)
        return {"n": int(inp.get("n", 0)) * 2}

    bus = await Bus.connect(args.url, prefix=args.prefix, name="agent-runner")
    backoff = tuple(float(x) for x in args.backoff.split(",") if x)
    rt = AgentRuntime(agent, bus, concurrency=1, announce=False, claim_lease=args.claim_lease,
                      consumer=ConsumerSettings(ack_wait=args.ack_wait, max_deliver=args.max_deliver, backoff=backoff))

    real_handle, real_publish, real_publish_async = rt.handle, bus.publish, bus.publish_async

    async def handle(msg: Any) -> None:
        req = bus.codec.decode(msg.data)
        log.add("insert into deliveries values (?, ?, ?)", req.task_id, msg.metadata.num_delivered, time.time())
        kill = str(req.payload.get("kill", "none"))
        kill_points[req.task_id] = kill
        if kill == "always" and Path(str(req.payload.get("poison", ""))).exists():
            os._exit(137)
        await real_handle(msg)

    def before(env: Any) -> None:
        if env.action is Action.ACK and kill_points.get(env.task_id) == "before_ack":
            log.die_once(env.task_id, "before_ack")

    async def after(env: Any, ack: Any) -> None:
        if env.action is Action.RESPONSE and kill_points.get(env.task_id) == "before_jsack":
            if isinstance(ack, asyncio.Future):
                await ack  # the RESPONSE is stored in the ledger
            log.die_once(env.task_id, "before_jsack")

    async def publish(env: Any, **kw: Any) -> Any:
        before(env)
        ack = await real_publish(env, **kw)
        await after(env, ack)
        return ack

    async def publish_async(env: Any, **kw: Any) -> Any:
        before(env)
        fut = await real_publish_async(env, **kw)
        await after(env, fut)
        return fut

    rt.handle = handle  # type: ignore[method-assign]
    bus.publish = publish  # type: ignore[method-assign]
    bus.publish_async = publish_async  # type: ignore[method-assign]
    await rt.start()
    assert rt.results is not None
    real_put, real_put_async = rt.results.put, getattr(rt.results, "put_async", None)

    async def recorded(rec: Any, store: Any) -> Any:
        point = kill_points.get(rec.task_id, "none")
        if point == "after_handler":
            log.die_once(rec.task_id, point)
        out = await store()
        if point == "after_result":
            if isinstance(out, asyncio.Future):
                await out  # the result is stored in KV
            log.die_once(rec.task_id, point)
        return out

    async def put(key: str, rec: Any) -> Any:
        return await recorded(rec, lambda: real_put(key, rec))

    async def put_async(key: str, rec: Any) -> Any:
        return await recorded(rec, lambda: real_put_async(key, rec))  # type: ignore[misc]

    rt.results.put = put  # type: ignore[method-assign]
    if real_put_async is not None:
        rt.results.put_async = put_async  # type: ignore[method-assign]
    Path(args.db + ".ready").write_text(str(os.getpid()))
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
