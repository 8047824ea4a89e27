"""What the CLI commands that talk to a server share: connecting (with a one-line failure) and reading the ledger.

Client commands never start a server as a side effect: without --url they use the embedded server that
`ledgerbus up` (or `demo`) left running for the data directory, and say so plainly when there is none.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Callable
from typing import Any
from pathlib import Path
from urllib.parse import urlsplit

import typer

from ledgerbus.bus.connection import URL_ENV, Bus
from ledgerbus.bus.server import EmbeddedServer, port_open
from ledgerbus.errors import AuthorizationError, ConfigError, InvalidMessage, ServerError, is_authorization_failure
from ledgerbus.eventstore.base import Rejected, StoredEvent



def check_prefix_option(value: str | None) -> str | None:
    """A bad --prefix is one line and exit 1 at parse time, before any file is read or server reached."""
    if value is None:
        return None
    from ledgerbus.bus.subjects import check_prefix
    from ledgerbus.cli.common import fail
    from ledgerbus.errors import ConfigError

    try:
        return check_prefix(value)
    except ConfigError as exc:
        fail(str(exc))


PrefixOption = typer.Option(None, "--prefix", envvar="LEDGERBUS_PREFIX", callback=check_prefix_option,
                            help="subject namespace of the deployment (default: lb)")

CONNECT_TIMEOUT = 5.0


def resolve_url(url: str | None, data_dir: Path) -> str:
    """The server to talk to: --url / $LEDGERBUS_NATS_URL, else the embedded server running for `data_dir`."""
    url = url or os.environ.get(URL_ENV)
    if url:
        return url
    state = EmbeddedServer.for_dir(data_dir).running()
    if state is None:
        raise ServerError(f"no ledgerbus server is running for {data_dir} (start one with `ledgerbus up`, "
                          f"or pass --url / set {URL_ENV}, or select a context with `ledgerbus context select`)")
    return f"nats://{state.get('host', '127.0.0.1')}:{state['port']}"


def uses_embedded(url: str | None) -> bool:
    """True when a command given `url` talks to the embedded server (no URL from flag, variable or context)."""
    from ledgerbus.cli import connopts
    from ledgerbus.cli.contexts import ContextStore

    if url or os.environ.get(URL_ENV):
        return False
    try:
        active = ContextStore().active(connopts.current().options.context)
    except ConfigError:
        return False  # connect() will say what is wrong with the context
    return active is None or not active[1].url


def _endpoints(url: str) -> list[tuple[str, int]]:
    out = []
    for part in url.split(","):
        part = part.strip()
        if "://" not in part:
            part = "nats://" + part
        u = urlsplit(part)
        out.append((u.hostname or "127.0.0.1", u.port or 4222))
    return out


def identity(bus: Bus) -> str | None:
    """The deployment user a security-mode connection is, and signs as; None without security mode."""
    ident = getattr(bus, "identity", None)
    return str(ident.name) if ident is not None else None


async def connect(url: str | None, data_dir: Path, *, prefix: str | None = None, name: str = "ledgerbus-cli",
                  sender: str | None = None) -> Bus:
    """A Bus, or ServerError (exit 2 through `common.run`) when nothing answers — never a hang or a traceback.

    Credentials come from the command's connection options (connopts) and the context (connplan). In
    security mode the Bus is a SecureBus that signs what it publishes as the deployment user; `sender`
    is the address the command will publish as, when it has one: it picks that user, and must be it.
    """
    from ledgerbus.cli import connopts, connplan

    session = connopts.current()
    plan = connplan.resolve(session.options, url=url, prefix=prefix, sender=sender)
    target = resolve_url(plan.url, data_dir)
    session.who, session.url, session.plan = plan.who(), target, plan
    # The client library reconnects forever on a refused first connect (allow_reconnect), so probe first:
    # a dead address must be one clear line, not a silent wait.
    try:
        eps = _endpoints(target)
    except ValueError as exc:
        raise ServerError(f"bad NATS URL {target!r}: {exc}") from None
    reachable = await asyncio.gather(*(asyncio.to_thread(port_open, h, p, 2.0) for h, p in eps))
    if not any(reachable):
        raise ServerError(f"no NATS server reachable at {target}")
    tls = plan.ssl_context()
    # Their warnings would be a second line; what the server refused is said in the one error line instead.
    for logger in ("ledgerbus.bus", "ledgerbus.security"):
        logging.getLogger(logger).setLevel(logging.ERROR)
    hopeless = asyncio.Event()
    untrusted: list[Exception] = []
    refused: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        await session.note(exc)
        # Retrying cannot fix these, and nats-py retries a TLS failure until the timeout: stop at once.
        if isinstance(exc, ssl.SSLCertVerificationError):
            untrusted.append(exc)
            hopeless.set()
        elif is_authorization_failure(exc):
            refused.append(exc)
            hopeless.set()

    if plan.member is not None and plan.deployment is not None:
        from ledgerbus.security.securebus import SecureBus

        connecting: Any = SecureBus.connect_as(target, plan.deployment, plan.member, tls=tls,
                                              connect_timeout=CONNECT_TIMEOUT, on_error=on_error)
    else:
        connecting = Bus.connect(target, prefix=plan.prefix, name=name, connect_timeout=CONNECT_TIMEOUT,
                                 user_credentials=plan.creds, nkeys_seed=plan.nkey_file, tls=tls,
                                 user=plan.user, password=plan.password, token=plan.token, on_error=on_error)
    task: asyncio.Task[Bus] = asyncio.ensure_future(connecting)
    given_up = asyncio.ensure_future(hopeless.wait())
    try:
        await asyncio.wait({task, given_up}, timeout=CONNECT_TIMEOUT * 2, return_when=asyncio.FIRST_COMPLETED)
    finally:
        given_up.cancel()
    if not task.done():
        task.cancel()
        try:
            await task
        except BaseException:  # the attempt we abandoned: its own error says nothing more
            pass
        if refused:
            raise AuthorizationError(f"authorization failed: {target} refused {plan.who()} ({_reason(refused[0])})")
        if untrusted:
            raise ServerError(f"NATS at {target}: the server's TLS certificate is not trusted ({untrusted[0]}); "
                              f"pass --tls-ca with the CA that signed it")
        hint = f": {session.last_error}" if session.last_error else ""
        raise ServerError(f"NATS at {target} accepted the connection but did not complete the handshake{hint}")
    try:
        return task.result()
    except AuthorizationError as exc:
        raise AuthorizationError(f"authorization failed: {target} refused {plan.who()} ({_reason(exc)})") from None


def _reason(exc: Exception) -> str:
    text = str(exc)
    return text.rsplit(": ", 1)[-1].removeprefix("nats: ").strip("'") if ": " in text else text


def decode(bus: Bus, seq: int, subject: str, data: bytes, stored_at: int | None = None) -> StoredEvent | Rejected:
    try:
        return StoredEvent(seq, bus.codec.decode(data), data, stored_at)
    except InvalidMessage as exc:
        return Rejected(seq, subject, data, exc.code, exc.reason)


async def stored_events(bus: Bus, subject: str | None = None, *, last: int | None = None,
                        on_progress: Callable[[int, int], None] | None = None) -> list[StoredEvent]:
    """Every envelope on `subject` (default: the whole ledger) that the stream holds now, in order.

    `last` limits the read to the newest `last` stream positions; `on_progress(done, total)` is told how
    far through the positions the read is (for a progress bar)."""
    from ledgerbus.cli.sources import newest
    from ledgerbus.eventstore.jetstream import JetStreamLedger

    source = JetStreamLedger(bus)
    flt = await newest(source, last)
    end = await source.last_position()
    out: list[StoredEvent] = []
    async for chunk in source.batches(flt, subjects=[subject] if subject else ()):
        out += chunk
        if on_progress is not None:
            on_progress(chunk[-1].position - flt.after, end - flt.after)
    return out
