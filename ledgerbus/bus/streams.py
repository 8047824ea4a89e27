"""The LEDGER stream and the per-agent-type consumers, as DESIGN.md fixes them."""

from __future__ import annotations

from dataclasses import dataclass

from nats.js import api

from ledgerbus.bus.subjects import Subjects


@dataclass(frozen=True)
class LedgerConfig:
    """Retention of the JetStream ledger. None means "keep forever" (limits retention, no limit)."""

    replicas: int = 1
    duplicate_window: float = 120.0
    max_age: float | None = None  # seconds
    max_bytes: int | None = None
    max_msg_size: int | None = None

    def stream_config(self, subjects: Subjects) -> api.StreamConfig:
        return api.StreamConfig(
            name=subjects.stream,
            description="ledgerbus ledger: every envelope, in order",
            subjects=[subjects.all()],
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            num_replicas=self.replicas,
            duplicate_window=self.duplicate_window,
            max_age=self.max_age or 0,
            max_bytes=self.max_bytes or -1,
            max_msg_size=self.max_msg_size or -1,
            discard=api.DiscardPolicy.OLD,
        )


@dataclass(frozen=True)
class ConsumerSettings:
    """Delivery settings of an agent type's shared durable pull consumer.

    `ack_wait` is the heartbeat window: an instance that neither answers nor sends in-progress acks
    within it loses the message to another instance. `backoff` spaces redeliveries.
    """

    ack_wait: float = 30.0
    max_deliver: int = 5
    backoff: tuple[float, ...] = ()
    max_ack_pending: int = 1000

    def consumer_config(self, subjects: Subjects, agent_type: str) -> api.ConsumerConfig:
        return api.ConsumerConfig(
            durable_name=consumer_name(agent_type),
            filter_subject=subjects.requests(agent_type),
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.NEW,
            ack_wait=self.ack_wait,
            max_deliver=self.max_deliver,
            backoff=list(self.backoff) or None,
            max_ack_pending=self.max_ack_pending,
        )


def consumer_name(agent_type: str) -> str:
    return f"agent-{agent_type}"
