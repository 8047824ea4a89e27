"""The Bus: one NATS connection, the ledger stream, and envelope publish/subscribe."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ledgerbus.bus import headers as H
from ledgerbus.bus._nats import client, kv, ops
from ledgerbus.bus._nats.appends import make_jetstream
from ledgerbus.bus._nats.errors import publish_error, translated
from ledgerbus.bus._nats.kv import Bucket
from ledgerbus.bus._nats.reads import Ordered, Pull, Subscription
from ledgerbus.bus.consumers import RequestConsumers
from ledgerbus.bus.messages import ConsumerState, Message, StoredMsg, StreamInfo
from ledgerbus.bus.plugins import Signer, Tracer, default_tracer
from ledgerbus.bus.server import EmbeddedServer
from ledgerbus.bus.streams import ConsumerSettings, ConsumerSpec, LedgerConfig, consumer_name
from ledgerbus.bus.subjects import Subjects
from ledgerbus.errors import AuthorizationError, Refused, ServerError, is_authorization_failure
from ledgerbus.schemas.codec import Codec
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import Envelope

log = logging.getLogger("ledgerbus.bus")

URL_ENV = "LEDGERBUS_NATS_URL"
PREFIX_ENV = "LEDGERBUS_PREFIX"


def envelope_headers(env: Envelope) -> dict[str, str]:
    h = {H.MSG_ID: env.id, H.SENDER: env.sender, H.TASK: env.task_id}
    if env.traceparent:
        h[H.TRACEPARENT] = env.traceparent
    return h


class Bus:
    """A connection to NATS with the ledger's conventions.

    Use `await Bus.connect()`: with no URL (and no LEDGERBUS_NATS_URL) it starts, or reuses, an
    embedded nats-server for the data directory and stops it on `close()` if it started it.

    Everything ledgerbus does with NATS goes through this class's methods, which raise ledgerbus's
    errors. `nc` and `js` are nats-py's connection and JetStream context, for tests and tools that
    speak nats-py themselves; nothing in ledgerbus outside `ledgerbus.bus` touches them.

    `signer` signs every body appended under the ledger's prefix (security's member identity);
    `tracer` spans what is published (default: the process's, which `ledgerbus.tracing` installs).
    """

    def __init__(self, nc: Any, *, subjects: Subjects, codec: Codec, server: EmbeddedServer | None = None,
                 signer: Signer | None = None, tracer: Tracer | None = None) -> None:
        self.nc = nc
        self.js: Any = make_jetstream(nc, signer=signer, ledger_prefix=subjects.prefix + ".")
        self.signer = signer
        self._tracer = tracer
        self.subjects = subjects
        self.codec = codec
        self.server = server
        self._ledger_ready = False
        # When (time.monotonic) this connection last lost or regained the server. Timeouts decided around
        # then may be the outage's doing, not an agent's (the orchestrator's breakers look at it).
        self.trouble_at = float("-inf")
        self.request_consumers = RequestConsumers(self)

    def note_trouble(self) -> None:
        self.trouble_at = time.monotonic()

    @property
    def tracer(self) -> Tracer:
        return self._tracer or default_tracer()

    @property
    def is_connected(self) -> bool:
        return bool(self.nc.is_connected)

    @property
    def is_closed(self) -> bool:
        return bool(self.nc.is_closed)

    def check_sender(self, env: Envelope, subject: str, data: bytes, headers: dict[str, str] | None) -> None:
        """Raise InvalidMessage(SPOOFED_SENDER) when `env`'s sender is not who published it; a bus without
        sender binding (this one) trusts every sender. SecureBus checks signatures here."""

    @classmethod
    async def connect(
        cls,
        url: str | None = None,
        *,
        prefix: str | None = None,
        name: str = "ledgerbus",
        data_dir: str | os.PathLike[str] | None = None,
        codec: Codec | None = None,
        ledger: LedgerConfig | None = None,
        connect_timeout: float = 5.0,
        initial_attempts: int = 3,
        user_credentials: str | None = None,
        nkeys_seed: str | None = None,
        tls: Any = None,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
        on_error: Callable[[Exception], Awaitable[None]] | None = None,
        tracer: Tracer | None = None,
    ) -> "Bus":
        # A bad prefix is refused before anything is started or connected.
        subjects = Subjects(prefix if prefix is not None else os.environ.get(PREFIX_ENV) or "lb")
        server: EmbeddedServer | None = None
        url = url or os.environ.get(URL_ENV)
        if not url:
            server = await asyncio.to_thread(EmbeddedServer.for_dir(data_dir).start)
            url = server.url

        first_errors: list[Exception] = []

        async def error_cb(exc: Exception) -> None:
            log.warning("nats: %s", exc)
            if len(first_errors) < 8:
                first_errors.append(exc)
            if on_error is not None:
                await on_error(exc)

        holder: dict[str, Bus] = {}

        async def on_disconnect() -> None:
            log.info("nats: disconnected; reconnecting")
            if "bus" in holder:
                holder["bus"].note_trouble()

        async def on_reconnect() -> None:
            log.info("nats: reconnected")
            if "bus" in holder:
                holder["bus"].note_trouble()

        kwargs: dict[str, Any] = {}
        if user_credentials:
            kwargs["user_credentials"] = user_credentials
        if nkeys_seed:
            kwargs["nkeys_seed"] = nkeys_seed
        if tls is not None:
            kwargs["tls"] = tls
        for key, value in (("user", user), ("password", password), ("token", token)):
            if value is not None:
                kwargs[key] = value
        try:
            nc = await cls.dial(
                url,
                name=name,
                connect_timeout=connect_timeout,
                allow_reconnect=True,
                # nats-py applies this to the first connect too, and with -1 it never gives up on an
                # unreachable URL: bound the first connect, then reconnect forever once connected.
                max_reconnect_attempts=initial_attempts,
                reconnect_time_wait=0.25,
                error_cb=error_cb,
                disconnected_cb=on_disconnect,
                reconnected_cb=on_reconnect,
                **kwargs,
            )
        except Exception as exc:  # nats raises several unrelated types for "can't connect"
            if server is not None:
                server.stop()
            # nats-py reports a refused login to error_cb and then says only "no servers available".
            refused = next((e for e in first_errors if is_authorization_failure(e)), None)
            if refused is not None:
                raise AuthorizationError(f"NATS at {url} refused the credentials: {refused}") from None
            raise ServerError(f"cannot connect to NATS at {url}: {exc or type(exc).__name__}") from None
        bus = cls(
            nc,
            subjects=subjects,
            codec=codec or Codec(),
            server=server,
            tracer=tracer,
        )
        holder["bus"] = bus
        from ledgerbus.bus.retention import ledger_config_from_env

        configured = ledger or ledger_config_from_env()  # LEDGERBUS_LEDGER_MAX_AGE / _MAX_BYTES
        await bus.ensure_ledger(configured or LedgerConfig(), update=configured is not None)
        return bus

    @staticmethod
    async def dial(url: str, **options: Any) -> Any:
        """A nats-py connection to `url` (nats-py's connect options), reconnecting forever once it is made;
        what subclasses that connect their own way pass to the constructor."""
        nc = await client.connect(url, **options)
        client.reconnect_forever(nc)
        return nc

    @property
    def url(self) -> str:
        return str(self.nc.connected_url.geturl()) if self.nc.connected_url else ""

    async def ensure_ledger(self, config: LedgerConfig, *, update: bool = True) -> StreamInfo:
        """Create the LEDGER stream, or bring an existing one to `config` (idempotent).

        `update=False` only creates: an existing stream keeps the retention someone set on it.
        """
        info = await ops.ensure_stream(self.js, config.stream_config(self.subjects), update=update)
        self._ledger_ready = True
        return info

    async def set_retention(self, *, max_age: float | None = None, max_bytes: int | None = None) -> StreamInfo:
        """Set the ledger stream's max age / size (None leaves a value as it is; 0 removes the limit)."""
        return await ops.set_retention(self.js, self.subjects.stream, max_age=max_age, max_bytes=max_bytes)

    # -- the stream: its state, and its messages by position ------------------------------

    async def stream_info(self, *, subjects_filter: str | None = None) -> StreamInfo:
        """The ledger stream's state (NotFound when it does not exist); with `subjects_filter`, its
        per-subject counts of the subjects that match."""
        return await ops.stream_info(self.js, self.subjects.stream, subjects_filter=subjects_filter)

    async def get_msg(self, seq: int, *, stream: str | None = None) -> StoredMsg:
        """The message at position `seq` of the ledger (or of `stream`); NotFound when it is not there."""
        return await ops.get_msg(self.js, stream or self.subjects.stream, seq)

    async def last_msg(self, subject: str) -> StoredMsg:
        """The ledger's last message on `subject`; NotFound when there is none."""
        return await ops.last_msg(self.js, self.subjects.stream, subject)

    # -- consumers ----------------------------------------------------------------------

    async def consumer_info(self, name: str, *, timeout: float | None = None) -> ConsumerState:
        """The ledger consumer `name`'s state; NotFound when it does not exist."""
        return await ops.consumer_info(self.js, self.subjects.stream, name, timeout=timeout)

    async def consumers(self) -> list[ConsumerState]:
        return await ops.consumers(self.js, self.subjects.stream)

    async def add_consumer(self, spec: ConsumerSpec) -> ConsumerState:
        """Create (or update the mutable settings of) a consumer on the ledger."""
        return await ops.add_consumer(self.js, self.subjects.stream, spec)

    async def delete_consumer(self, name: str) -> None:
        """Delete a ledger consumer; NotFound when there is none of that name."""
        await ops.delete_consumer(self.js, self.subjects.stream, name)

    async def create_consumer_if_absent(self, spec: ConsumerSpec, *, timeout: float) -> tuple[str, str] | None:
        """Create `spec`'s consumer unless it exists, never changing one that does; None when done, else
        ("unanswered" or "refused", why)."""
        return await ops.create_consumer_if_absent(self.js, self.nc, self.subjects.stream, spec, timeout=timeout)

    async def pull(self, spec: ConsumerSpec, *, stream: str | None = None) -> Pull:
        """A pull consumer on the ledger (or `stream`) made for this read, bound for fetching."""
        return await ops.pull(self.js, stream or self.subjects.stream, spec)

    async def bind(self, durable: str) -> Pull:
        """The ledger's existing durable consumer `durable`, bound for fetching."""
        return await ops.bind(self.js, self.subjects.stream, durable)

    async def ordered(self, subject: str = "", *, filter_subjects: tuple[str, ...] = (), start_seq: int | None = None,
                      new: bool = False, cb: Callable[[Message], Awaitable[None]] | None = None) -> Ordered:
        """An ordered read of the ledger: every message on `subject` (or `filter_subjects`) once, in order,
        from position `start_seq`, from now on (`new`), or from the start."""
        return await ops.ordered(self.js, self.subjects.stream, subject, filter_subjects=filter_subjects,
                                 start_seq=start_seq, new=new, cb=cb)

    # -- KV buckets ---------------------------------------------------------------------

    async def bucket(self, name: str, *, ttl: float | None, direct: bool) -> Bucket:
        """The KV bucket `name` as this user may open it (created without rollups if missing, unless the
        user may only bind to it: see `bind_only`)."""
        return await kv.open_bucket(self.js, name, ttl=ttl, direct=direct, bind_only=getattr(self, "bind_only", False))

    async def ensure_bucket(self, name: str, *, ttl: float | None, direct: bool) -> Bucket:
        """Create the KV bucket `name` without rollups, or take an existing one's rollups away."""
        return await kv.open_bucket(self.js, name, ttl=ttl, direct=direct, bind_only=False)

    # -- publishing -------------------------------------------------------------------------

    async def publish(self, env: Envelope, *, timeout: float = 5.0, ensure_consumer: bool = True) -> Any:
        """Append `env` to the ledger and deliver it; returns once JetStream has stored it.

        A REQUEST to a type this connection has not sent to before first makes sure the type's consumer
        exists, so the request waits for its first instance (`ensure_consumer=False`: copied history, or
        a conductor's own root REQUEST, which no one else is to take).

        Raises InvalidMessage for an envelope the codec refuses, else PublishError (a ServerError) saying
        why the append failed: PublishTimeout, NoLedgerStream, PublishRefused or ConnectionClosed.
        """
        if ensure_consumer and env.action is Action.REQUEST and env.recipient not in self.request_consumers.ready:
            await self.request_consumers.ensure(env.recipient)
        subject = self.subjects.of(env)
        # Tracing on: a PRODUCER span, whose context goes into env.traceparent and the headers.
        with self.tracer.send_span(self.subjects.prefix, env) as trace_headers:
            try:  # inside the span, so that it records the error the caller gets
                return await self.js.publish(
                    subject,
                    self.codec.encode(env),
                    timeout=timeout,
                    headers={**envelope_headers(env), **trace_headers},
                )
            except Exception as exc:
                failure = publish_error(exc, subject)
                if failure is exc:
                    raise
                raise failure from exc

    async def publish_async(self, env: Envelope) -> asyncio.Future[Any]:
        """Pipelined append: returns a future for the PubAck without waiting for it.

        Raises, or fails the future with, the errors `publish` raises."""
        if env.action is Action.REQUEST and env.recipient not in self.request_consumers.ready:
            await self.request_consumers.ensure(env.recipient)
        subject = self.subjects.of(env)
        tracer = self.tracer
        if not tracer.enabled():
            try:
                fut = await self.js.publish_async(subject, self.codec.encode(env), headers=envelope_headers(env))
            except Exception as exc:
                failure = publish_error(exc, subject)
                if failure is exc:
                    raise
                raise failure from exc
            return translated(fut, subject)
        span, trace_headers = tracer.start_send(self.subjects.prefix, env)
        headers = envelope_headers(env)  # with the traceparent the span just wrote into env
        headers.update(trace_headers)
        try:
            fut = translated(await self.js.publish_async(subject, self.codec.encode(env), headers=headers), subject)
        except BaseException as exc:
            failure = publish_error(exc, subject)
            tracer.end_send(span, failure)
            if failure is exc:
                raise
            raise failure from exc
        tracer.end_send_when_acked(span, fut)
        return fut

    async def publish_raw(self, subject: str, data: bytes, headers: dict[str, str] | None = None,
                          *, timeout: float | None = None) -> Any:
        """Append raw bytes (copied history, and tools that speak the wire format directly); its PubAck.
        Raises the errors `publish` raises."""
        try:
            return await self.js.publish(subject, data, timeout=timeout, headers=headers)
        except Exception as exc:
            failure = publish_error(exc, subject)
            if failure is exc:
                raise
            raise failure from exc

    async def publish_raw_async(self, subject: str, data: bytes,
                                headers: dict[str, str] | None = None) -> "asyncio.Future[Any]":
        """Pipelined `publish_raw`: a future for the PubAck, failed with the errors `publish` raises."""
        try:
            fut = await self.js.publish_async(subject, data, headers=headers)
        except Exception as exc:
            failure = publish_error(exc, subject)
            if failure is exc:
                raise
            raise failure from exc
        return translated(fut, subject)

    # -- subscribing ------------------------------------------------------------------------

    async def subscribe(self, subject: str, cb: Callable[[Message], Awaitable[None]], *, queue: str = "") -> Subscription:
        """Core NATS messages on `subject` (no durability: what is not listened to now is not seen)."""
        return await ops.subscribe(self.nc, subject, cb, queue=queue)

    async def subscribe_inbox(self, address: str, cb: Callable[[Message], Awaitable[None]], *,
                              queue: str = "") -> Subscription:
        """Live answers addressed to `address` (core NATS: the ledger keeps the durable copy)."""
        return await self.subscribe(self.subjects.inbox(address), cb, queue=queue)

    def may_create_consumer(self, agent_type: str) -> bool:
        """Whether this connection's user may create `agent_type`'s consumer (a secured agent may not)."""
        return True

    async def agent_consumer(self, agent_type: str, settings: ConsumerSettings | None = None) -> Pull:
        """The durable pull consumer shared by every instance of `agent_type` (created if missing).

        An existing consumer takes this instance's mutable settings (AckWait, MaxDeliver, BackOff,
        MaxAckPending: JetStream's create-or-update), keeping its position and the requests it holds, so a
        consumer a publisher created before the type's first instance ran becomes the agent's own.
        """
        settings = settings or ConsumerSettings()
        spec = settings.consumer_config(self.subjects, agent_type)
        try:
            await self.add_consumer(spec)
        except Refused as exc:
            if exc.code != 400:
                raise
            # It differs in what JetStream cannot change (filter, deliver or ack policy). Deleting it would
            # drop the requests it holds, so keep it and say so: that is an operator's decision.
            log.warning("consumer %s exists with other settings (%s); using it as it is", consumer_name(agent_type),
                        exc.description or exc)
        return await self.bind(consumer_name(agent_type))

    async def close(self) -> None:
        # flush + close rather than drain: components stop their own consumers first, and drain would
        # wait out its full timeout on pull subscriptions that have a fetch outstanding.
        try:
            if self.nc.is_connected:
                await self.nc.flush(timeout=2)
        except Exception as exc:  # closing must not raise on an already broken connection
            log.debug("flush before close failed: %s", exc)
        try:
            await self.nc.close()
        except Exception:
            pass
        if self.server is not None:
            await asyncio.to_thread(self.server.stop)
            self.server = None

    async def __aenter__(self) -> "Bus":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
