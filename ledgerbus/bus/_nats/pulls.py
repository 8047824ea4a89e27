"""Fetched messages handed over without a task each.

nats-py's pull `fetch` takes every message of a batch through `Subscription.next_msg`, which starts a
task that runs `asyncio.wait_for` (a second task) and names it with a `uuid4`: about 15 µs a message,
timed alone. That was about 40% of the recorder's CPU per event and one seventh of an agent's per
step. When the message is already in the subscription's queue (the rest of a batch, which arrives
in one read), it is taken straight from the queue here. When the fetch must wait (an idle agent's
next request, every sequential step), it waits in the caller's task on one waiter of the queue,
registered where nats-py registers its own waits so that closing the connection ends it the same
way, with the same errors for a timeout and a close.

The fetch itself is one pull request answered in full (`_one_shot_fetch`), expiring at the server a
margin before the fetch gives up (`pull_expiry`): nats-py's own let the server's 408 race its timer,
and after an idle spell handed every other request over one fetch timeout late."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import nats.errors
import nats.js.errors
from nats.js import api

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
    nc: Any = getattr(pull_sub, "_nc", None)
    nms: Any = getattr(pull_sub, "_nms", None)
    deliver: Any = getattr(pull_sub, "_deliver", None)
    if nc is not None and isinstance(nms, str) and isinstance(deliver, str):
        pull_sub.fetch = _one_shot_fetch(nc, nms, deliver, queue, take, next_msg)
    return pull_sub


#: How much sooner than the caller's fetch timeout the server is told to expire the pull request.
PULL_EXPIRY_MARGIN = 0.2


#: How long a fetch that has messages waits for the next one (or the status ending its request).
BATCH_GAP = 0.1


def pull_expiry(timeout: float) -> float:
    """The `expires` (seconds) of the pull request a fetch waiting `timeout` seconds sends: clearly
    before the client gives up, so the server's 408 ends the wait it belongs to.

    nats-py asks for `timeout` less 100 µs and waits `timeout`: the 408 then often arrives after its
    fetch has given up, and the next fetch takes it for the answer to its own request, sends a second
    pull while the first still waits at the server, and the request that first pull is then handed
    (with no end-of-batch status after it) waits out the whole fetch timeout: a request taken about
    one timeout late, after an agent has idled a few seconds."""
    return max(timeout - min(PULL_EXPIRY_MARGIN, timeout / 4), timeout / 2)


def _status(msg: Any) -> str | None:
    headers = msg.headers
    return headers.get(api.Header.STATUS) if headers else None


#: Statuses that end a pull request without an error: nothing there, expired, or cut short (409:
#: too many waiting, leadership change; nats-py treats them the same way).
_ENDS = (api.StatusCode.NO_MESSAGES, api.StatusCode.REQUEST_TIMEOUT, api.StatusCode.CONFLICT)


def _one_shot_fetch(nc: Any, nms: str, deliver: str, queue: Any, take: Any, next_msg: Any) -> Any:
    async def fetch(batch: int = 1, timeout: float | None = 5, heartbeat: float | None = None) -> list[Any]:
        """One pull request per fetch, answered in full before the next is sent: it waits at the server
        until a message is there (expiring a margin before `timeout`), then hands over what is there
        up to `batch` and ends with a 404, so the fetch returns as soon as its messages arrived.
        `timeout=None` waits 5 s: a request that never expires would outlive its fetch."""
        if batch < 1:
            raise ValueError("nats: invalid batch size")
        if timeout is not None and timeout <= 0:
            raise ValueError("nats: invalid fetch timeout")
        msgs: list[Any] = []
        # Delivered before this fetch (a pull that outlived its fetch): handed over first; a status
        # left in the queue belonged to a request already over.
        while len(msgs) < batch and queue.qsize():
            msg = take()
            if _status(msg) is None:
                msgs.append(msg)
        if msgs:
            return msgs
        req: dict[str, Any] = {"batch": batch, "no_wait": True}
        wait = timeout if timeout is not None else 5.0
        req["expires"] = int(pull_expiry(wait) * 1_000_000_000)
        if heartbeat:
            req["idle_heartbeat"] = int(heartbeat * 1_000_000_000)
        await nc.publish(nms, json.dumps(req).encode(), deliver)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while len(msgs) < batch:
            left = deadline - loop.time()
            try:
                # Once something came, the rest (and the 404) follow at once; a message handed over by a
                # request that outlived its fetch has no end-of-batch status after it, and must not wait
                # for this request's own end.
                msg = await next_msg(min(left, BATCH_GAP) if msgs else left)
            except nats.errors.TimeoutError:
                if msgs:
                    return msgs
                raise
            status = _status(msg)
            if status is None:
                msgs.append(msg)
            elif status == api.StatusCode.CONTROL_MESSAGE:
                continue  # an idle heartbeat
            elif status in _ENDS:
                if msgs:
                    return msgs
                raise nats.errors.TimeoutError
            else:
                raise nats.js.errors.APIError.from_msg(msg)
        return msgs

    return fetch
