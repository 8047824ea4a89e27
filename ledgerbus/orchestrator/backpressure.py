"""Backpressure: an agent type gets at most as many requests at once as its live instances can take.

A request beyond that would only wait in the type's JetStream queue, where its receipt window runs
out although every instance is healthy. So it waits here instead, before it is sent (like a rate-limit
wait): its REQUEST goes out when a slot is free, and its receipt, stall and timeout windows start then.
The capacity is what the directory says (the sum of the live instances' `concurrency`); a type the
directory does not know is not held back (its requests go out, and a missing receipt says nobody is there).
"""

from __future__ import annotations

import asyncio
from collections import deque


class CapacityGate:
    """In-flight requests per agent type, bounded by the latest capacity given for it."""

    def __init__(self) -> None:
        self._inflight: dict[str, int] = {}
        self._capacity: dict[str, int | None] = {}
        self._waiters: dict[str, deque[asyncio.Future[None]]] = {}

    def inflight(self, agent: str) -> int:
        return self._inflight.get(agent, 0)

    def waiting(self, agent: str) -> int:
        return sum(1 for f in self._waiters.get(agent, ()) if not f.done())

    async def acquire(self, agent: str, capacity: int | None, *, timeout: float | None = None) -> bool:
        """Take a slot of `agent`, waiting (first come, first served) while `capacity` slots are taken.

        `capacity` None: no known limit. Past `timeout` seconds the slot is taken anyway (False): the
        caller's deadline matters more than the queue.
        """
        self._capacity[agent] = capacity
        queue = self._waiters.setdefault(agent, deque())
        _prune(queue)
        if not queue and self._free(agent):
            self._inflight[agent] = self._inflight.get(agent, 0) + 1
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(fut)
        self._admit(agent)  # the capacity may have grown since the others began to wait
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
            return True
        except asyncio.TimeoutError:
            if fut.done():
                return True  # admitted just as the wait ran out
            fut.cancel()
            self._inflight[agent] = self._inflight.get(agent, 0) + 1
            return False
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.release(agent)  # admitted, but the caller is gone: the slot goes to the next one
            else:
                fut.cancel()
            raise

    def release(self, agent: str) -> None:
        """Give a slot back; the longest waiter takes it if the capacity allows."""
        self._inflight[agent] = max(self._inflight.get(agent, 0) - 1, 0)
        self._admit(agent)

    def _free(self, agent: str) -> bool:
        capacity = self._capacity.get(agent)
        return capacity is None or self._inflight.get(agent, 0) < capacity

    def _admit(self, agent: str) -> None:
        queue = self._waiters.get(agent)
        while queue and self._free(agent):
            fut = queue.popleft()
            if not fut.done():
                self._inflight[agent] = self._inflight.get(agent, 0) + 1
                fut.set_result(None)


def _prune(queue: deque[asyncio.Future[None]]) -> None:
    while queue and queue[0].done():
        queue.popleft()
