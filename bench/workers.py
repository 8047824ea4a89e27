"""Child processes of the benchmark: `python -m bench.workers KIND ...`.

Each prints one JSON line on stdout when it is ready to serve (its pid and resident memory), then
serves until SIGTERM.

  raw URL SUBJECT                      core NATS responder echoing the request bytes
  rawstep URL STREAM SUBJECT CONC      a durable step in plain nats-py: pull the REQUEST, publish an ACK
                                       and a RESPONSE into the stream (pipelined), ack once both are stored
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


async def rawstep(url: str, stream: str, subject: str, concurrency: int) -> None:
    """What a durable step costs with no library: the same three appends, none of ledgerbus's work
    (no decoding, validation, idempotency record, tracing or envelopes built)."""
    import nats
    import nats.errors

    from bench.baselines import sample_envelope_bytes

    nc = await nats.connect(url, name="bench-rawstep-agent")
    js = nc.jetstream()
    sub = await js.pull_subscribe(f"{subject}.req.>", durable="rawstep", stream=stream)
    data = sample_envelope_bytes()
    slots = asyncio.Semaphore(concurrency)

    async def answer(msg: Any) -> None:
        try:
            key = msg.subject.rsplit(".", 1)[1]
            ack = await js.publish_async(f"{subject}.ans.{key}", data, headers={"Nats-Msg-Id": f"a{key}"})
            resp = await js.publish_async(f"{subject}.ans.{key}", data, headers={"Nats-Msg-Id": f"r{key}", "a": "R"})
            await ack
            await resp
            await msg.ack()
        finally:
            slots.release()

    async def pull() -> None:
        tasks: set[asyncio.Task[None]] = set()
        while True:  # the same fetch-as-many-as-free-slots loop as AgentRuntime's
            await slots.acquire()
            free = 1
            while free < concurrency and not slots.locked():
                await slots.acquire()
                free += 1
            try:
                msgs = await sub.fetch(free, timeout=1.0)
            except nats.errors.TimeoutError:
                msgs = []
            for _ in range(free - len(msgs)):
                slots.release()
            for m in msgs:
                t = asyncio.create_task(answer(m))
                tasks.add(t)
                t.add_done_callback(tasks.discard)

    puller = asyncio.create_task(pull())

    async def stop() -> None:
        puller.cancel()
        await nc.close()

    await _serve_until_term({}, stop)


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
    r = sub.add_parser("rawstep")
    for name in ("url", "stream", "subject"):
        r.add_argument(name)
    r.add_argument("concurrency", type=int)
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
    elif args.kind == "rawstep":
        coro = rawstep(args.url, args.stream, args.subject, args.concurrency)
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
