"""SecureBus: a Bus that authenticates with the user's nkey, signs what it publishes and checks senders.

Sender binding: every envelope is signed with the publisher's nkey over its subject and body (header
`Lb-Sig`, format v2). Readers — the agent runtime, the recorder, requesters — verify the signature
against the public key of the address in `sender`, for the subject the message arrived on, and that
subject must be the envelope's own (`lb.<recipient>.<action>.<conversationId>`). A mismatch (no
signature, an old body-only one, a wrong key, a body changed after signing, a genuine envelope
re-published on another subject, an unknown sender) is SPOOFED_SENDER: the runtime refuses the request
with an ERROR and the recorder files it among the rejects, never among the events the fold sees.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ledgerbus.bus.connection import Bus, Pull
from ledgerbus.bus.streams import ConsumerSettings, LedgerConfig, consumer_name
from ledgerbus.bus.subjects import Subjects
from ledgerbus.bus.ttl import DEFAULT_TTL
from ledgerbus.errors import AuthorizationError, InvalidMessage, ServerError, is_authorization_failure
from ledgerbus.schemas.codec import Codec
from ledgerbus.schemas.codes import ErrorCode
from ledgerbus.schemas.envelope import Envelope
from ledgerbus.security.deployment import Deployment
from ledgerbus.security.keys import SIG_HEADER, Identity, envelope_signature_problem, verify_key
from ledgerbus.security.permissions import AGENTS_BUCKET, CONDUCTORS_BUCKET, RESULTS_BUCKET, inbox_prefix

log = logging.getLogger("ledgerbus.security")


class SecureBus(Bus):
    identity: Identity
    trust: dict[str, Any]
    violations: list[str]
    may_watch_dead_letters: bool
    member: str
    role: str
    bind_only: bool

    @classmethod
    async def connect_as(
        cls,
        url: str,
        deployment: Deployment,
        name: str,
        *,
        codec: Codec | None = None,
        ledger: LedgerConfig | None = None,
        tls: Any = None,
        connect_timeout: float = 5.0,
        on_error: Callable[[Exception], Awaitable[None]] | None = None,
    ) -> "SecureBus":
        """Connect as deployment member `name` (its seed must be known) on its private inbox prefix."""
        ident = deployment.identity(name)

        bus_violations: list[str] = []

        async def record(exc: Exception) -> None:
            # Permission violations arrive here, asynchronously: keep them so callers (and tests) can see them.
            log.warning("nats (%s): %s", name, exc)
            bus_violations.append(str(exc))
            if on_error is not None:
                await on_error(exc)

        try:
            # Bounded: a refused TLS handshake or nkey makes nats-py retry the first connect indefinitely.
            nc = await asyncio.wait_for(cls.dial(
                url,
                name=name,
                nkeys_seed_str=ident.seed,
                inbox_prefix=inbox_prefix(name),
                connect_timeout=connect_timeout,
                allow_reconnect=True,
                # Bounded for the first connect, as in Bus.connect: a refused nkey is said at once, not
                # retried until the timeout; once connected, reconnect forever.
                max_reconnect_attempts=3,
                reconnect_time_wait=0.25,
                error_cb=record,
                tls=tls,
            ), connect_timeout * 2)
        except asyncio.TimeoutError:
            refused = next((v for v in bus_violations if is_authorization_failure(v)), None)
            if refused is not None:
                raise AuthorizationError(f"NATS at {url} refused user {name!r} (nkey {ident.public}): {refused}") from None
            hint = "; ".join(bus_violations[-2:]) or "no answer"
            raise ServerError(f"cannot connect to NATS at {url} as {name!r} within {connect_timeout * 2:.0f}s: {hint}") from None
        except Exception as exc:  # nats raises several unrelated types for "can't connect"
            refused = next((v for v in bus_violations if is_authorization_failure(v)), None)
            if refused is not None:
                raise AuthorizationError(f"NATS at {url} refused user {name!r} (nkey {ident.public}): {refused}") from None
            raise ServerError(f"cannot connect to NATS at {url} as {name!r}: {exc or type(exc).__name__}") from None
        # Signed below Bus.publish, where the body is final, so tracing and pipelining stay as they are.
        bus = cls(nc, subjects=Subjects(deployment.prefix), codec=codec or Codec(), signer=ident)
        bus.identity = ident
        bus.trust = {n: verify_key(p) for n, p in deployment.trust().items()}
        bus.violations = bus_violations
        bus.may_watch_dead_letters = deployment.members[name].role != "agent"
        bus.member, bus.role = name, deployment.members[name].role
        bus.bind_only = deployment.members[name].role == "agent"  # buckets without stream info (see bus/_nats/kv.py)
        if deployment.members[name].role == "admin":
            await bus.ensure_ledger(ledger or LedgerConfig())
        return bus

    def check_sender(self, env: Envelope, subject: str, data: bytes, headers: dict[str, str] | None) -> None:
        """Raise InvalidMessage(SPOOFED_SENDER) unless `data` on `subject` is signed by the key of `env.sender`
        and `subject` is the envelope's own."""
        key = self.trust.get(env.sender)
        sig = (headers or {}).get(SIG_HEADER)
        own = self.subjects.of(env)
        if key is None:
            reason = f"sender {env.sender!r} is not a member of this deployment"
        elif not sig:
            reason = f"envelope claims sender {env.sender!r} but carries no {SIG_HEADER} signature"
        elif (problem := envelope_signature_problem(key, subject, data, sig)) is not None:
            reason = f"envelope claims sender {env.sender!r} but is not signed by {env.sender!r}'s key: {problem}"
        elif subject != own:
            # A signer only ever signs an envelope's own subject; this one was signed elsewhere and replayed.
            reason = f"envelope from {env.sender!r} arrived on {subject}, but it is addressed to {own}"
        else:
            return
        raise InvalidMessage(reason, code=ErrorCode.SPOOFED_SENDER.value, path="$.sender",
                             details={"claimedSender": env.sender})

    # -- consumers --------------------------------------------------------------------------

    def may_create_consumer(self, agent_type: str) -> bool:
        # An agent may create only its own consumer (the others are provisioned); asking anyway would cost
        # a permission violation and a request timeout before the first REQUEST to each type.
        return self.role in ("client", "admin") or (self.role == "agent" and agent_type == self.member)

    async def agent_consumer(self, agent_type: str, settings: ConsumerSettings | None = None) -> Pull:
        """Like Bus.agent_consumer, but created through the filtered create subject the permissions pin."""
        spec = (settings or ConsumerSettings()).consumer_config(self.subjects, agent_type)
        await self.add_consumer(spec.named(consumer_name(agent_type)))
        return await self.bind(consumer_name(agent_type))


async def provision(
    admin: SecureBus,
    deployment: Deployment,
    *,
    consumers: dict[str, ConsumerSettings] | None = None,
    kv_ttl: float = 7 * 24 * 3600,
) -> None:
    """Create, as admin, what the other users may use but not create: buckets (direct get) and agent consumers."""
    subjects = deployment.subjects
    for base, ttl in ((RESULTS_BUCKET, kv_ttl), (AGENTS_BUCKET, DEFAULT_TTL), (CONDUCTORS_BUCKET, None)):
        # Without rollups: one `Nats-Rollup: all` on an agent's own key would otherwise purge every key.
        await admin.ensure_bucket(subjects.bucket(base), ttl=ttl, direct=True)
    for m in deployment.members.values():
        if m.role == "agent":
            settings = (consumers or {}).get(m.name, ConsumerSettings())
            await admin.add_consumer(settings.consumer_config(subjects, m.name).named(consumer_name(m.name)))
