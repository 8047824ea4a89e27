"""Fetched messages handed over without a task each.

nats-py's pull `fetch` takes every message of a batch through `Subscription.next_msg`, which starts a
task that runs `asyncio.wait_for` (a second task) and names it with a `uuid4`: about 15 µs a message,
timed alone. That was about 40% of the recorder's CPU per event and one seventh of an agent's per
step. When the message is already in the subscription's queue (the rest of a batch, which arrives
in one read), it is taken straight from the queue here. When the fetch must wait (an idle agent's
next request, every sequential step), it waits in the caller's task on one waiter of the queue,
registered where nats-py registers its own waits so that closing the connection ends it the same
way, with the same errors for a timeout and a close."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import nats.errors

from ledgerbus.aio import expire_at


def quicken(pull_sub: Any) -> Any:
    """Give `pull_sub` (a nats-py PullSubscription) the queued-message fast path and a wait without
    tasks; returns it. nats-py internals are checked first: without them it is returned unchanged."""
    # nats-py's private parts, checked here before use: typed Any, as nats-py does not type them.
    inner: Any = getattr(pull_sub, "_sub", None)
    queue: Any = getattr(inner, "_pending_queue", None)
    conn: Any = getattr(inner, "_conn", None)
    if queue is None or conn is None or not hasattr(inner, "_pending_size"):
        return pull_sub
    waiting_next = inner.next_msg
    calls: Any = getattr(inner, "_pending_next_msgs_calls", None)
    getters: Any = getattr(queue, "_getters", None)
    own_wait = isinstance(calls, dict) and getters is not None and hasattr(queue, "_wakeup_next")

    def take() -> Any:
        msg = queue.get_nowait()
        # The bookkeeping nats-py's next_msg does for a message it hands over.
        inner._pending_size -= len(msg.data)
        queue.task_done()
        return msg

    async def wait(timeout: float | None) -> Any:
        """nats-py's wait for the next message, in the caller's task: one waiter on the queue (as
        `Queue.get` makes), cancelled by close as nats-py's own waits are, failed by a timer."""
        if conn.is_closed:
            raise nats.errors.ConnectionClosedError
        loop = asyncio.get_running_loop()
        while queue.empty():
            waiter = loop.create_future()
            getters.append(waiter)  # woken by the queue's put, as Queue.get's own waiter is
            calls[waiter] = waiter  # the connection's close cancels it
            timer = expire_at(loop.time() + timeout, waiter) if timeout is not None else None
            try:
                await waiter
            except BaseException as exc:
                # As Queue.get leaves a wait that ended early: off the queue's list, and a wake-up it
                # was given passed to the next in line.
                waiter.cancel()
                with contextlib.suppress(ValueError):  # a put may have taken it off already
                    getters.remove(waiter)
                if not queue.empty() and not waiter.cancelled():
                    queue._wakeup_next(getters)
                if isinstance(exc, TimeoutError):
                    raise (nats.errors.ConnectionClosedError if conn.is_closed else nats.errors.TimeoutError)() from None
                if isinstance(exc, asyncio.CancelledError) and conn.is_closed:
                    raise nats.errors.ConnectionClosedError from None  # as nats-py's next_msg says it
                raise
            finally:
                if timer is not None:
                    timer.cancel()
                calls.pop(waiter, None)
        return take()

    async def next_msg(timeout: float | None = 1.0) -> Any:
        if queue.qsize() and not conn.is_closed:
            return take()
        if own_wait:
            return await wait(timeout)
        return await waiting_next(timeout)

    inner.next_msg = next_msg
    return pull_sub


def stream_sequence(msg: Any) -> int:
    """`msg.metadata.sequence.stream`, read from the ack subject without building nats-py's Metadata
    (a datetime and three objects per message: 8% of the recorder's CPU per event)."""
    tokens: list[str] = msg.reply.split(".") if msg.reply else []
    # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>; other forms
    # (domain and account hash, from servers in a cluster with domains) take nats-py's reading.
    if len(tokens) == 9 and tokens[0] == "$JS" and tokens[1] == "ACK":
        return int(tokens[5])
    return int(msg.metadata.sequence.stream)


def stored_ms(msg: Any) -> int | None:
    """When JetStream stored the message (unix ms), from the same ack subject: the observer's time the
    fold's windows run on (DESIGN.md, "Time is the observer's"); None when the message carries none."""
    tokens: list[str] = msg.reply.split(".") if msg.reply else []
    if len(tokens) == 9 and tokens[0] == "$JS" and tokens[1] == "ACK":
        return int(tokens[7]) // 1_000_000
    try:
        return datetime_ms(msg.metadata.timestamp)
    except Exception:  # not a JetStream message (core NATS): nobody stored it
        return None


def datetime_ms(value: Any) -> int | None:
    """A stored message's datetime (nats-py's Metadata.timestamp, RawStreamMsg.time) as unix ms."""
    return round(value.timestamp() * 1000) if value is not None else None
