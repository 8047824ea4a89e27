"""What nats-py raises for an append, as the ledgerbus error that says it (the boundary of `Bus.publish`).

Each ledgerbus error is also the nats-py error it stands for, so code that catches those keeps working.
"""

from __future__ import annotations

import asyncio
from typing import Any

import nats.errors
import nats.js.errors

from ledgerbus.errors import ConnectionClosed, NoLedgerStream, PublishError, PublishRefused, PublishTimeout


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
