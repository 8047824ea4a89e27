"""The Bus: one NATS connection, the ledger stream, and envelope publish/subscribe."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import api
from nats.js.errors import BadRequestError, NotFoundError

from ledgerbus.bus._nats import client
from ledgerbus.bus import headers as H
from ledgerbus.bus._nats.appends import PipelinedJetStream
from ledgerbus.bus.consumers import RequestConsumers
from ledgerbus.bus._nats.errors import publish_error, translated
from ledgerbus.bus.server import EmbeddedServer
from ledgerbus.bus.streams import ConsumerSettings, LedgerConfig, consumer_name
from ledgerbus.bus.subjects import Subjects
from ledgerbus.errors import AuthorizationError, ServerError, is_authorization_failure
from ledgerbus.schemas.codec import Codec
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import Envelope
from ledgerbus.tracing import instrument as tracing
from ledgerbus.tracing import setup as tracing_setup

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
    """

    def __init__(self, nc: NATS, *, subjects: Subjects, codec: Codec, server: EmbeddedServer | None = None) -> None:
        self.nc = nc
        self.js: PipelinedJetStream = PipelinedJetStream(nc)
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
            nc = await client.connect(
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
        nc.options["max_reconnect_attempts"] = -1
        bus = cls(
            nc,
            subjects=subjects,
            codec=codec or Codec(),
            server=server,
        )
        holder["bus"] = bus
        from ledgerbus.bus.retention import ledger_config_from_env

        configured = ledger or ledger_config_from_env()  # LEDGERBUS_LEDGER_MAX_AGE / _MAX_BYTES
        await bus.ensure_ledger(configured or LedgerConfig(), update=configured is not None)
        return bus

    @property
    def url(self) -> str:
        return str(self.nc.connected_url.geturl()) if self.nc.connected_url else ""

    async def ensure_ledger(self, config: LedgerConfig, *, update: bool = True) -> api.StreamInfo:
        """Create the LEDGER stream, or bring an existing one to `config` (idempotent).

        `update=False` only creates: an existing stream keeps the retention someone set on it.
        """
        cfg = config.stream_config(self.subjects)
        try:
            info = await self.js.stream_info(self.subjects.stream)
        except NotFoundError:
            info = await self.js.add_stream(cfg)
        else:
            cur = info.config
            if update and (cur.max_age or 0, cur.max_bytes or -1, cur.duplicate_window) != (
                cfg.max_age,
                cfg.max_bytes,
                cfg.duplicate_window,
            ):
                info = await self.js.update_stream(cfg)
        self._ledger_ready = True
        return info

    # -- publishing -------------------------------------------------------------------------

    async def publish(self, env: Envelope, *, timeout: float = 5.0, ensure_consumer: bool = True) -> api.PubAck:
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
        with tracing.send_span(self.subjects.prefix, env) as trace_headers:
            try:  # inside the span, so that it records the error the caller gets
                return await self.js.publish(
                    subject,
                    self.codec.encode(env),
                    timeout=timeout,
                    headers={**envelope_headers(env), **trace_headers},
                )
            except nats.errors.Error as exc:
                raise publish_error(exc, subject) from exc

    async def publish_async(self, env: Envelope) -> asyncio.Future[api.PubAck]:
        """Pipelined append: returns a future for the PubAck without waiting for it.

        Raises, or fails the future with, the errors `publish` raises."""
        if env.action is Action.REQUEST and env.recipient not in self.request_consumers.ready:
            await self.request_consumers.ensure(env.recipient)
        subject = self.subjects.of(env)
        if not tracing_setup.enabled():
            try:
                fut = await self.js.publish_async(subject, self.codec.encode(env), headers=envelope_headers(env))
            except nats.errors.Error as exc:
                raise publish_error(exc, subject) from exc
            return translated(fut, subject)
        span, trace_headers = tracing.start_send(self.subjects.prefix, env)
        headers = envelope_headers(env)  # with the traceparent the span just wrote into env
        headers.update(trace_headers)
        try:
            fut = translated(await self.js.publish_async(subject, self.codec.encode(env), headers=headers), subject)
        except BaseException as exc:
            failure = publish_error(exc, subject)
            tracing.end_send(span, failure)
            if failure is exc:
                raise
            raise failure from exc
        tracing.end_send_when_acked(span, fut)
        return fut

    async def publish_raw(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> api.PubAck:
        """Append raw bytes (tests and tools that speak the wire format directly)."""
        return await self.js.publish(subject, data, headers=headers)

    # -- subscribing ------------------------------------------------------------------------

    async def subscribe_inbox(self, address: str, cb: Callable[[Msg], Awaitable[None]], *, queue: str = "") -> Any:
        """Live answers addressed to `address` (core NATS: the ledger keeps the durable copy)."""
        return await self.nc.subscribe(self.subjects.inbox(address), queue=queue, cb=cb)

    def may_create_consumer(self, agent_type: str) -> bool:
        """Whether this connection's user may create `agent_type`'s consumer (a secured agent may not)."""
        return True

    async def agent_consumer(self, agent_type: str, settings: ConsumerSettings | None = None) -> Any:
        """The durable pull consumer shared by every instance of `agent_type` (created if missing).

        An existing consumer takes this instance's mutable settings (AckWait, MaxDeliver, BackOff,
        MaxAckPending: JetStream's create-or-update), keeping its position and the requests it holds, so a
        consumer a publisher created before the type's first instance ran becomes the agent's own.
        """
        settings = settings or ConsumerSettings()
        cfg = settings.consumer_config(self.subjects, agent_type)
        try:
            await self.js.add_consumer(self.subjects.stream, cfg)
        except BadRequestError as exc:
            # It differs in what JetStream cannot change (filter, deliver or ack policy). Deleting it would
            # drop the requests it holds, so keep it and say so: that is an operator's decision.
            log.warning("consumer %s exists with other settings (%s); using it as it is", consumer_name(agent_type), exc)
        return await self.js.pull_subscribe_bind(consumer_name(agent_type), stream=self.subjects.stream)

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
