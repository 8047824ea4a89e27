"""What nats-py raises, as the ledgerbus error that says it: the one place nats-py's errors are read.

`Bus`'s methods raise only ledgerbus errors: `translate` for reads, KV and consumer management,
`publish_error` for an append (a PublishError subclass, as `Bus.publish` promises). Like httpx mapping
httpcore's errors, this is the only module that knows nats-py's exception types.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import nats.errors
import nats.js.errors

from ledgerbus.errors import (BusClosed, BusTimeout, ConnectionClosed, LedgerbusError, NoLedgerStream, NotFound,
                              PublishError, PublishRefused, PublishTimeout, Refused, ServerError, WrongRevision)

# JSStreamWrongLastSequenceErrF and its constant twin: the entry changed since the revision named.
_WRONG_LAST = (10071, 10164)


def _described(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def translate(exc: BaseException, where: str) -> BaseException:
    """The ledgerbus error for nats-py's `exc` raised doing `where`; anything else as it is."""
    if isinstance(exc, LedgerbusError) or not isinstance(exc, nats.errors.Error):
        return exc
    out: ServerError
    if isinstance(exc, nats.js.errors.KeyWrongLastSequenceError):
        out = WrongRevision(f"{where}: the entry is no longer at the revision named", code=400, err_code=10071,
                            description=exc.description)
    elif isinstance(exc, (nats.js.errors.KeyNotFoundError, nats.js.errors.NotFoundError)):
        out = NotFound(f"{where}: not found")
    elif isinstance(exc, nats.errors.ConnectionClosedError):
        out = BusClosed(f"{where}: the connection to NATS is closed")
    elif isinstance(exc, nats.errors.TimeoutError):
        out = BusTimeout(f"{where}: no answer in time")
    elif isinstance(exc, (nats.js.errors.NoStreamResponseError, nats.errors.NoRespondersError)):
        out = NotFound(f"{where}: no stream or service answers (is JetStream enabled?)")
    elif isinstance(exc, nats.js.errors.APIError):
        cls = WrongRevision if exc.err_code in _WRONG_LAST else Refused
        out = cls(f"{where}: JetStream refused it: {exc.description or 'no reason given'} "
                  f"(code {exc.code}, error {exc.err_code})",
                  code=exc.code, err_code=exc.err_code, description=exc.description)
    elif isinstance(exc, nats.errors.MaxPayloadError):  # refused by the client before it is sent
        out = Refused(f"{where}: larger than the server's max_payload", description=str(exc))
    else:
        out = ServerError(f"{where}: {_described(exc)}")
    out.__cause__ = exc
    return out


@contextlib.contextmanager
def translated_errors(where: str) -> Iterator[None]:
    """Raise nats-py's errors inside the block as their ledgerbus errors."""
    try:
        yield
    except nats.errors.Error as exc:
        raise translate(exc, where) from exc


def publish_error(exc: BaseException, subject: str) -> BaseException:
    """The PublishError for `exc` raised appending to `subject`; anything not from nats-py as it is."""
    if isinstance(exc, PublishError) or not isinstance(exc, nats.errors.Error):
        return exc
    where = f"append to {subject}"
    out: PublishError
    if isinstance(exc, nats.errors.ConnectionClosedError):
        out = ConnectionClosed(f"{where}: the connection to NATS is closed")
    elif isinstance(exc, nats.errors.TimeoutError):
        out = PublishTimeout(f"{where}: {PublishTimeout.default}")
    elif isinstance(exc, (nats.js.errors.NoStreamResponseError, nats.errors.NoRespondersError)):
        out = NoLedgerStream(f"{where}: {NoLedgerStream.default}")
    elif isinstance(exc, nats.js.errors.APIError):
        out = PublishRefused(f"{where}: JetStream refused it: {exc.description or 'no reason given'}"
                             f" (code {exc.code}, error {exc.err_code})",
                             code=exc.code, err_code=exc.err_code, description=exc.description)
    elif isinstance(exc, nats.errors.MaxPayloadError):  # refused by the client before it is sent
        out = PublishRefused(f"{where}: larger than the server's max_payload", description=str(exc))
    else:
        out = PublishError(f"{where}: {exc}")
    out.__cause__ = exc
    return out


def translated(fut: "asyncio.Future[Any]", subject: str) -> "asyncio.Future[Any]":
    """A future settled as `fut` is, with a nats-py failure as its PublishError; cancelling it cancels `fut`
    (a PubAck given up on must not stay pending among the connection's appends)."""
    out: asyncio.Future[Any] = fut.get_loop().create_future()

    def settle(f: "asyncio.Future[Any]") -> None:
        if f.cancelled():
            out.cancel()
            return
        exc = f.exception()  # retrieved even when `out` is settled already
        if out.done():
            return
        if exc is None:
            out.set_result(f.result())
        else:
            out.set_exception(publish_error(exc, subject))

    def given_up(o: "asyncio.Future[Any]") -> None:
        if not fut.done():
            fut.cancel()

    fut.add_done_callback(settle)
    out.add_done_callback(given_up)
    return out


def is_nats_error(exc: BaseException) -> bool:
    return isinstance(exc, nats.errors.Error)
