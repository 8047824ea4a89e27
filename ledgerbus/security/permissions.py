"""NATS permissions per role, as plain data (pure: no I/O).

Roles:
- agent `<type>`: publish envelopes, pull only its own consumer (whose filter is pinned to its own
  requests in the create subject), ack only its own messages, read/write only its own results in KV,
  subscribe only to its own answers and its own reply inbox. No stream info (of the ledger or a bucket):
  it would list other conversations and keys.
- client (the orchestrator, a CLI user): publish envelopes, read its own answers, read the ledger
  (resume, dead letters), watch MAX_DELIVERIES advisories, claim conversations in the conductors KV,
  create the consumer of a type it sends a REQUEST to before the type's first instance ran.
- recorder: read the ledger through its durable consumer; publish nothing on the bus.
- admin: everything (provisioning the stream, consumers and buckets; never given to an agent).

Nothing but admin may delete or purge a stream: those API subjects are never allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ledgerbus.bus.streams import consumer_name
from ledgerbus.bus.subjects import Subjects

RESULTS_BUCKET = "LB_RESULTS"
AGENTS_BUCKET = "LB_AGENTS"
CONDUCTORS_BUCKET = "LB_CONDUCTORS"


@dataclass(frozen=True)
class Permissions:
    publish: list[str] = field(default_factory=list)
    subscribe: list[str] = field(default_factory=list)

    def render(self) -> str:
        def q(items: list[str]) -> str:
            return "[" + ", ".join(f'"{s}"' for s in items) + "]"

        return f"{{ publish: {{ allow: {q(self.publish)} }}, subscribe: {{ allow: {q(self.subscribe)} }} }}"


def inbox_prefix(name: str) -> str:
    """Each user's private reply inbox: JetStream API answers and pulled messages arrive there."""
    return f"_INBOX.{name}"


def agent(name: str, subjects: Subjects) -> Permissions:
    stream, durable = subjects.stream, consumer_name(name)
    results, agents = subjects.bucket(RESULTS_BUCKET), subjects.bucket(AGENTS_BUCKET)
    return Permissions(
        publish=[
            subjects.all(),
            "$JS.API.INFO",
            # No STREAM.INFO on the ledger or the buckets: with `subjects_filter` it lists every conversation
            # id and every key. The runtime binds to its consumer and its buckets without it.
            # The filter is part of the subject, so the server refuses a consumer reading another type's requests.
            f"$JS.API.CONSUMER.CREATE.{stream}.{durable}.{subjects.requests(name)}",
            f"$JS.API.CONSUMER.INFO.{stream}.{durable}",
            f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}",
            f"$JS.ACK.{stream}.{durable}.>",
            f"$JS.API.DIRECT.GET.KV_{results}.$KV.{results}.{name}.>",
            f"$KV.{results}.{name}.>",
            f"$KV.{agents}.{name}.>",
        ],
        subscribe=[subjects.inbox(name), f"{inbox_prefix(name)}.>"],
    )


def client(name: str, subjects: Subjects) -> Permissions:
    stream = subjects.stream
    agents, conductors = subjects.bucket(AGENTS_BUCKET), subjects.bucket(CONDUCTORS_BUCKET)
    return Permissions(
        publish=[
            subjects.all(),
            "$JS.API.INFO",
            f"$JS.API.STREAM.INFO.{stream}",
            f"$JS.API.STREAM.MSG.GET.{stream}",
            f"$JS.API.DIRECT.GET.{stream}.>",
            f"$JS.API.CONSUMER.CREATE.{stream}",  # ephemeral readers (several filter subjects: no name in the subject)
            f"$JS.API.CONSUMER.CREATE.{stream}.>",
            f"$JS.API.CONSUMER.INFO.{stream}.>",
            f"$JS.API.CONSUMER.LIST.{stream}",  # `ledgerbus status`: each consumer's pending counts
            f"$JS.API.CONSUMER.MSG.NEXT.{stream}.>",
            f"$JS.API.CONSUMER.DELETE.{stream}.>",
            f"$JS.ACK.{stream}.>",
            f"$JS.API.STREAM.INFO.KV_{agents}",
            f"$JS.API.STREAM.MSG.GET.KV_{agents}",
            f"$JS.API.DIRECT.GET.KV_{agents}.>",
            f"$JS.API.CONSUMER.CREATE.KV_{agents}.>",
            f"$JS.API.CONSUMER.INFO.KV_{agents}.>",
            f"$JS.API.CONSUMER.MSG.NEXT.KV_{agents}.>",
            f"$JS.API.CONSUMER.DELETE.KV_{agents}.>",
            f"$KV.{agents}.{name}.>",  # an orchestrator service announces itself like an agent
            f"$JS.API.STREAM.INFO.KV_{conductors}",
            f"$JS.API.STREAM.MSG.GET.KV_{conductors}",
            f"$JS.API.DIRECT.GET.KV_{conductors}.>",
            f"$KV.{conductors}.>",
        ],
        subscribe=[
            subjects.inbox(name),
            f"{inbox_prefix(name)}.>",
            f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.>",
        ],
    )


def recorder(name: str, subjects: Subjects) -> Permissions:
    stream = subjects.stream
    return Permissions(
        publish=[
            "$JS.API.INFO",
            f"$JS.API.STREAM.INFO.{stream}",
            f"$JS.API.CONSUMER.CREATE.{stream}.{name}.>",
            f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{name}",
            f"$JS.API.CONSUMER.INFO.{stream}.{name}",
            f"$JS.API.CONSUMER.DELETE.{stream}.{name}",
            f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{name}",
            f"$JS.ACK.{stream}.{name}.>",
        ],
        subscribe=[f"{inbox_prefix(name)}.>"],
    )


def admin(name: str, subjects: Subjects) -> Permissions:
    return Permissions(publish=[">"], subscribe=[">"])


ROLES = {"agent": agent, "client": client, "recorder": recorder, "admin": admin}
