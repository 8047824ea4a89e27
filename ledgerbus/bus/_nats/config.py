"""ledgerbus's stream and consumer descriptions as nats-py's configuration objects (pure)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nats.js import api

if TYPE_CHECKING:
    from ledgerbus.bus.streams import ConsumerSpec, LedgerConfig
    from ledgerbus.bus.subjects import Subjects

_DELIVER = {"all": api.DeliverPolicy.ALL, "new": api.DeliverPolicy.NEW,
            "last_per_subject": api.DeliverPolicy.LAST_PER_SUBJECT}
_ACK = {"none": api.AckPolicy.NONE, "all": api.AckPolicy.ALL, "explicit": api.AckPolicy.EXPLICIT}


def ledger_stream_config(ledger: "LedgerConfig", subjects: "Subjects") -> api.StreamConfig:
    return api.StreamConfig(
        name=subjects.stream,
        description="ledgerbus ledger: every envelope, in order",
        subjects=[subjects.all()],
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        num_replicas=ledger.replicas,
        duplicate_window=ledger.duplicate_window,
        max_age=ledger.max_age or 0,
        max_bytes=ledger.max_bytes or -1,
        max_msg_size=ledger.max_msg_size or -1,
        discard=api.DiscardPolicy.OLD,
    )


def consumer_config(spec: "ConsumerSpec") -> api.ConsumerConfig:
    cfg = api.ConsumerConfig(
        durable_name=spec.durable_name,
        name=spec.name,
        description=spec.description,
        ack_policy=_ACK[spec.ack],
        ack_wait=spec.ack_wait,
        max_deliver=spec.max_deliver,
        backoff=list(spec.backoff) or None,
        max_ack_pending=spec.max_ack_pending,
        inactive_threshold=spec.inactive_threshold,
        mem_storage=spec.mem_storage,
    )
    if spec.start_seq is not None:
        cfg.deliver_policy = api.DeliverPolicy.BY_START_SEQUENCE
        cfg.opt_start_seq = spec.start_seq
    else:
        cfg.deliver_policy = _DELIVER[spec.deliver]
    if len(spec.filter_subjects) == 1:
        cfg.filter_subject = spec.filter_subjects[0]
    elif spec.filter_subjects:
        cfg.filter_subjects = list(spec.filter_subjects)
    return cfg
