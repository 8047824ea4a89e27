"""Child processes of the benchmark: `python -m bench.workers KIND ...`.

Each prints one JSON line on stdout when it is ready to serve (its pid and resident memory), then
serves until SIGTERM.

  raw URL SUBJECT                      core NATS responder echoing the request bytes
  faststream URL SUBJECT               FastStream subscriber with a pydantic-typed handler
  agents URL PREFIX TYPES INSTANCES CONCURRENCY [--handlers echo|pipeline] [--tracing] [--no-idempotent]
                                       ledgerbus AgentRuntime instances with trivial handlers,
                                       each instance on its own connection
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from bench.procs import rss_bytes


async def _serve_until_term(ready: dict[str, Any], stop: Callable[[], Awaitable[None]]) -> None:
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, done.set)
    loop.add_signal_handler(signal.SIGINT, done.set)
    print(json.dumps({"pid": os.getpid(), "rss": rss_bytes(), **ready}), flush=True)
    await done.wait()
    await stop()


async def raw(url: str, subject: str) -> None:
    import nats

    nc = await nats.connect(url, name="bench-raw-responder")

    async def cb(msg: Any) -> None:
        await msg.respond(msg.data)

    await nc.subscribe(subject, cb=cb)
    await nc.flush()  # the server knows the subscription before anyone is told we are ready
    await _serve_until_term({}, nc.close)


async def faststream(url: str, subject: str) -> None:
    from faststream.nats import NatsBroker

    from bench.fs_models import Echo

    broker = NatsBroker(url, logger=None)

    @broker.subscriber(subject)
    async def echo(msg: Echo) -> Echo:
        return msg

    await broker.start()
    await _serve_until_term({}, broker.stop)


async def agents(url: str, prefix: str, types: int, instances: int, concurrency: int, kind: str,
                 idempotent: bool = True) -> None:
    from bench.agents_trivial import echo_agents, pipeline_agents
    from ledgerbus.agents.runtime import AgentRuntime
    from ledgerbus.bus.connection import Bus

    agent_types = echo_agents(types) if kind == "echo" else pipeline_agents()
    base = rss_bytes()
    buses: list[Bus] = []
    runtimes: list[AgentRuntime] = []
    for i in range(instances):
        bus = await Bus.connect(url, prefix=prefix, name=f"bench-agent-{i}")
        buses.append(bus)
        rt = AgentRuntime(agent_types[i % len(agent_types)], bus, concurrency=concurrency,
                          idempotent=idempotent)
        runtimes.append(await rt.start())

    async def stop() -> None:
        await asyncio.gather(*(r.stop(drain=False) for r in runtimes), return_exceptions=True)
        await asyncio.gather(*(b.close() for b in buses), return_exceptions=True)

    await _serve_until_term({"rss_base": base}, stop)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="bench.workers")
    sub = p.add_subparsers(dest="kind", required=True)
    for name in ("raw", "faststream"):
        s = sub.add_parser(name)
        s.add_argument("url")
        s.add_argument("subject")
    a = sub.add_parser("agents")
    a.add_argument("url")
    a.add_argument("prefix")
    a.add_argument("types", type=int)
    a.add_argument("instances", type=int)
    a.add_argument("concurrency", type=int)
    a.add_argument("--handlers", choices=("echo", "pipeline"), default="echo")
    a.add_argument("--tracing", action="store_true", help="every span sampled, exported to nowhere")
    a.add_argument("--no-idempotent", action="store_true", help="no idempotency record (AgentRuntime(idempotent=False))")
    args = p.parse_args(argv)
    if getattr(args, "tracing", False):
        from bench.tracing_bench import turn_on

        turn_on()
    if args.kind == "raw":
        coro = raw(args.url, args.subject)
    elif args.kind == "faststream":
        coro = faststream(args.url, args.subject)
    else:
        coro = agents(args.url, args.prefix, args.types, args.instances, args.concurrency, args.handlers,
                      not args.no_idempotent)
    try:
        asyncio.run(coro)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
