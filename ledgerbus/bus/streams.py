"""The LEDGER stream and the per-agent-type consumers, as DESIGN.md fixes them."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from ledgerbus.bus.subjects import Subjects


@dataclass(frozen=True)
class LedgerConfig:
    """Retention of the JetStream ledger. None means "keep forever" (limits retention, no limit)."""

    replicas: int = 1
    duplicate_window: float = 120.0
    max_age: float | None = None  # seconds
    max_bytes: int | None = None
    max_msg_size: int | None = None

    def stream_config(self, subjects: Subjects) -> Any:
        """The LEDGER stream's configuration as the server takes it (nats-py's StreamConfig)."""
        from ledgerbus.bus._nats.config import ledger_stream_config

        return ledger_stream_config(self, subjects)


@dataclass(frozen=True)
class ConsumerSpec:
    """A JetStream consumer, in ledgerbus's terms (turned into the server's configuration in bus/_nats).

    `start_seq` set delivers from that stream position; otherwise `deliver` says where to begin."""

    durable_name: str | None = None
    name: str | None = None
    description: str | None = None
    filter_subjects: tuple[str, ...] = ()
    deliver: Literal["all", "new", "last_per_subject"] = "all"
    start_seq: int | None = None
    ack: Literal["none", "all", "explicit"] = "explicit"
    ack_wait: float | None = None
    max_deliver: int | None = None
    backoff: tuple[float, ...] = ()
    max_ack_pending: int | None = None
    inactive_threshold: float | None = None
    mem_storage: bool | None = None

    def named(self, name: str, description: str | None = None) -> "ConsumerSpec":
        return replace(self, name=name, description=description if description is not None else self.description)


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

    def consumer_config(self, subjects: Subjects, agent_type: str) -> ConsumerSpec:
        return ConsumerSpec(
            durable_name=consumer_name(agent_type),
            filter_subjects=(subjects.requests(agent_type),),
            ack="explicit",
            deliver="new",
            ack_wait=self.ack_wait,
            max_deliver=self.max_deliver,
            backoff=self.backoff,
            max_ack_pending=self.max_ack_pending,
        )


def consumer_name(agent_type: str) -> str:
    return f"agent-{agent_type}"
