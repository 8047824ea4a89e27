"""Requests before the first agent: whoever publishes a REQUEST to a type makes sure its consumer exists.

An agent type's durable consumer starts at NEW, so a REQUEST stored before the consumer existed would
never be delivered. The publisher therefore creates the consumer first, with the settings an agent
would create it with (`ConsumerSettings()`); the first instance to start brings the mutable settings
(AckWait, MaxDeliver, BackOff, MaxAckPending) to its own, and takes the queued requests.

The create uses the JetStream action `create`: it never changes a consumer that exists (an agent's
settings are kept), and "already exists" counts as done. One request per type per connection, before
the first REQUEST to it; afterwards a set lookup.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ledgerbus.bus.streams import ConsumerSettings, consumer_name

if TYPE_CHECKING:
    from ledgerbus.bus.connection import Bus

log = logging.getLogger("ledgerbus.bus")

#: The description of a consumer a publisher created before any instance of its type ran.
PLACEHOLDER = "created by a publisher before any instance of its type ran"

class RequestConsumers:
    """The types this connection has made sure of (or given up on), and the one create per type."""

    def __init__(self, bus: "Bus", *, timeout: float = 2.0) -> None:
        self.bus = bus
        self.timeout = timeout
        self.ready: set[str] = set()
        self._pending: dict[str, asyncio.Future[None]] = {}

    async def ensure(self, agent_type: str) -> None:
        """Create `agent_type`'s consumer unless it exists. Never raises: a publish must not fail for it."""
        if agent_type in self.ready:
            return
        pending = self._pending.get(agent_type)
        if pending is not None:  # another publish to the same type is creating it: wait for that one
            await asyncio.shield(pending)
            return
        fut = self._pending[agent_type] = asyncio.get_running_loop().create_future()
        try:
            await self._create(agent_type)
            self.ready.add(agent_type)  # created, found, or given up on (said once): not asked again
        finally:
            del self._pending[agent_type]
            fut.set_result(None)

    async def _create(self, agent_type: str) -> None:
        if not self.bus.may_create_consumer(agent_type):
            log.info("not creating the consumer of %s before its first REQUEST: this user may not "
                     "(it is provisioned for it, or created when an instance starts)", agent_type)
            return
        spec = ConsumerSettings().consumer_config(self.bus.subjects, agent_type)
        failed = await self.bus.create_consumer_if_absent(spec.named(consumer_name(agent_type), PLACEHOLDER),
                                                          timeout=self.timeout)
        if failed is None:
            return
        kind, why = failed
        if kind == "unanswered":  # no permission (no reply), a timeout, a closed connection: said once
            log.warning("could not make sure the consumer of %s exists (%s); a REQUEST published before "
                        "its first instance starts will not reach it", agent_type, why)
        else:
            log.warning("could not create the consumer of %s: %s", agent_type, why)
