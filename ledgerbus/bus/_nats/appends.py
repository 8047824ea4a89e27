"""JetStream appends and direct gets answered on one reply subscription, with a future each.

nats-py's `publish_async` waits for its pending-limit semaphore under `asyncio.wait_for` (a task and a
timer for every message) and draws random bytes for every reply token; its `publish` and direct get
go through `request`, another `wait_for` each. A step makes four of these, and replacing them took a
sixth to a fifth off the CPU of a step's two processes (measured A/B). Here a reply token is a counter, the limit is checked by counting,
and a PubAck is decoded by msgspec. Replies and "no stream" behave as in nats-py, and an API error
(a refused append) fails the future with nats-py's error type, where nats-py's reply handler raises
it and leaves the future hanging.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import api
from nats.js.client import JetStreamContext

from ledgerbus.aio import within
from ledgerbus.bus._nats.compat import PLAIN
from ledgerbus.bus._nats.pulls import quicken

_NO_RESPONDERS = "503"
_NOT_FOUND = "404"
_STATUS = "Status"  # where nats-py puts an inline status (api.Header.STATUS's value)


class _Ack(msgspec.Struct):
    """The server's answer to an append: a PubAck, or an API error."""

    stream: str = ""
    seq: int = 0
    domain: str | None = None
    duplicate: bool | None = None
    error: dict[str, Any] | None = None


_ack_decoder = msgspec.json.Decoder(_Ack)


def _settle_ack(fut: "asyncio.Future[api.PubAck]", msg: Msg) -> None:
    headers = msg.headers
    if headers and headers.get(_STATUS) == _NO_RESPONDERS:
        fut.set_exception(nats.js.errors.NoStreamResponseError())
        return
    try:
        ack = _ack_decoder.decode(msg.data)
    except msgspec.DecodeError as exc:
        fut.set_exception(nats.js.errors.Error(f"unreadable PubAck: {exc}"))
        return
    if ack.error is not None:
        fut.set_exception(_api_error(ack.error))
        return
    fut.set_result(api.PubAck(stream=ack.stream, seq=ack.seq, domain=ack.domain, duplicate=ack.duplicate))


def _api_error(err: dict[str, Any]) -> Exception:
    """nats-py's error type for an API error (its `from_error` raises it; a reply callback must not)."""
    try:
        nats.js.errors.APIError.from_error(err)
    except nats.js.errors.APIError as exc:
        return exc
    except Exception as exc:  # a malformed error object
        return nats.js.errors.APIError(description=f"{err!r} ({exc})")
    return nats.js.errors.APIError(description=repr(err))  # pragma: no cover - from_error always raises


def _signed(signer: Any, ledger_prefix: str, subject: str, payload: bytes,
            headers: dict[str, Any] | None) -> dict[str, Any] | None:
    """`headers` with the signer's signature of `payload` when `subject` is the ledger's."""
    if signer is None or not subject.startswith(ledger_prefix):
        return headers
    return {**(headers or {}), **signer.signature_headers(subject, payload)}


class PlainJetStream(JetStreamContext):
    """nats-py's own JetStream context (its public API only), signing what it appends to the ledger."""

    def __init__(self, conn: Any, *, signer: Any = None, ledger_prefix: str = "", **kw: Any) -> None:
        super().__init__(conn, **kw)
        self._signer = signer
        self._ledger_prefix = ledger_prefix

    async def publish(self, subject: str, payload: bytes = b"", timeout: float | None = None,
                      stream: str | None = None, headers: dict[str, Any] | None = None,
                      msg_ttl: float | None = None) -> api.PubAck:
        return await super().publish(subject, payload, timeout=timeout, stream=stream,
                                     headers=_signed(self._signer, self._ledger_prefix, subject, payload, headers),
                                     msg_ttl=msg_ttl)

    async def publish_async(self, subject: str, payload: bytes = b"", wait_stall: float | None = None,
                            stream: str | None = None, headers: dict[str, Any] | None = None,
                            msg_ttl: float | None = None) -> "asyncio.Future[api.PubAck]":
        return await super().publish_async(subject, payload, wait_stall=wait_stall, stream=stream,
                                           headers=_signed(self._signer, self._ledger_prefix, subject, payload,
                                                           headers), msg_ttl=msg_ttl)


def make_jetstream(nc: Any, *, signer: Any = None, ledger_prefix: str = "") -> JetStreamContext:
    """The connection's JetStream context: the pipelined one, or nats-py's own under LEDGERBUS_NATS_PLAIN."""
    if PLAIN:
        return PlainJetStream(nc, signer=signer, ledger_prefix=ledger_prefix)
    return PipelinedJetStream(nc, signer=signer, ledger_prefix=ledger_prefix)


class PipelinedJetStream(JetStreamContext):
    """A JetStreamContext whose `publish`, `publish_async` and `direct_get_last` share one reply inbox,
    and whose pull subscriptions hand queued messages over without a task each (`pulls.quicken`)."""

    def __init__(self, conn: Any, *, max_pending: int = 4000, signer: Any = None, ledger_prefix: str = "",
                 **kw: Any) -> None:
        super().__init__(conn, **kw)
        self._signer = signer
        self._ledger_prefix = ledger_prefix
        self._reply_prefix: str | None = None
        self._starting: asyncio.Future[None] | None = None
        self._waiting: dict[str, tuple[asyncio.Future[Any], bool]] = {}  # token -> (future, is a direct get)
        self._tokens = itertools.count(1)
        self._max_pending = max_pending
        self._sweep_at = 1024
        self._swept = float("-inf")
        self._room: asyncio.Event | None = None

    async def _reply_inbox(self) -> str:
        if self._reply_prefix is not None:
            return self._reply_prefix
        if self._starting is None:  # the first caller subscribes; any caller meanwhile waits for it
            self._starting = asyncio.get_running_loop().create_future()
            try:
                prefix = self._nc.new_inbox() + "."  # the connection's inbox prefix: permissions allow replies there
                await self._nc.subscribe(prefix + "*", cb=self._on_reply)
            except BaseException as exc:
                self._starting.set_exception(exc)
                self._starting.exception()  # retrieved: the caller gets it raised below
                self._starting = None
                raise
            self._reply_prefix = prefix
            self._starting.set_result(None)
            return prefix
        await asyncio.shield(self._starting)
        assert self._reply_prefix is not None
        return self._reply_prefix

    async def _on_reply(self, msg: Msg) -> None:
        entry = self._waiting.pop(msg.subject[len(self._reply_prefix or ""):], None)
        if entry is None:
            return
        fut, is_get = entry
        if not fut.done():
            if is_get:
                fut.set_result(msg)
            else:
                _settle_ack(fut, msg)
        if self._room is not None and len(self._waiting) < self._max_pending:
            self._room.set()

    async def _send(self, subject: str, payload: bytes, headers: dict[str, Any] | None, *, is_get: bool,
                    wait_stall: float | None) -> "asyncio.Future[Any]":
        """Publish with a reply token of our inbox; the future settles when the reply comes."""
        prefix = self._reply_prefix or await self._reply_inbox()
        token, fut = await self._register(is_get, wait_stall)
        try:
            await self._nc.publish(subject, payload, reply=prefix + token, headers=headers)
        except BaseException:
            self._waiting.pop(token, None)
            raise
        return fut

    async def _register(self, is_get: bool, wait_stall: float | None) -> tuple[str, asyncio.Future[Any]]:
        if len(self._waiting) >= self._sweep_at:
            self._sweep()
        if len(self._waiting) >= self._max_pending:
            await self._wait_for_room(wait_stall)
        token = str(next(self._tokens))
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[token] = (fut, is_get)
        return token, fut

    def _sweep(self) -> None:
        """Drop futures given up on (a caller's timeout) whose reply never came, in amortised O(1)."""
        self._waiting = {t: e for t, e in self._waiting.items() if not e[0].done()}
        self._sweep_at = max(1024, 2 * len(self._waiting))
        self._swept = asyncio.get_running_loop().time()

    async def _wait_for_room(self, wait_stall: float | None) -> None:
        """At the pending limit: wait for replies (bulk pipelining); sweep abandoned entries at most once a
        second, so a full table costs a reply O(1), not a scan."""
        loop = asyncio.get_running_loop()
        deadline = None if wait_stall is None else loop.time() + wait_stall
        while len(self._waiting) >= self._max_pending:
            now = loop.time()
            if now - self._swept >= 1.0:
                self._sweep()
                continue
            if deadline is not None and now >= deadline:
                raise nats.js.errors.TooManyStalledMsgsError
            self._room = self._room or asyncio.Event()
            self._room.clear()
            try:
                async with asyncio.timeout(1.0 if deadline is None else min(1.0, deadline - now)):
                    await self._room.wait()
            except TimeoutError:
                pass

    async def publish_async(self, subject: str, payload: bytes = b"", wait_stall: float | None = None,
                            stream: str | None = None, headers: dict[str, Any] | None = None,
                            msg_ttl: float | None = None) -> "asyncio.Future[api.PubAck]":
        headers = _signed(self._signer, self._ledger_prefix, subject, payload, headers)
        if stream is not None or msg_ttl is not None:  # options ledgerbus never sets: nats-py's own path
            return await super().publish_async(subject, payload, wait_stall=wait_stall, stream=stream,
                                                headers=headers, msg_ttl=msg_ttl)
        return await self._send(subject, payload, headers, is_get=False, wait_stall=wait_stall)

    async def publish(self, subject: str, payload: bytes = b"", timeout: float | None = None,
                      stream: str | None = None, headers: dict[str, Any] | None = None,
                      msg_ttl: float | None = None) -> api.PubAck:
        if stream is not None or msg_ttl is not None:
            return await super().publish(subject, payload, timeout=timeout, stream=stream,
                                         headers=_signed(self._signer, self._ledger_prefix, subject, payload, headers),
                                         msg_ttl=msg_ttl)
        fut = await self.publish_async(subject, payload, headers=headers)  # signed there
        return await within(fut, self._timeout if timeout is None else timeout,
                            nats.errors.TimeoutError)

    async def pull_subscribe_bind(self, *args: Any, **kw: Any) -> Any:
        # pull_subscribe creates the consumer and then binds through here, so both get the fast path.
        return quicken(await super().pull_subscribe_bind(*args, **kw))

    def _unsettled_appends(self) -> list["asyncio.Future[Any]"]:
        return [fut for fut, is_get in self._waiting.values() if not is_get and not fut.done()]

    def publish_async_pending(self) -> int:
        """Appends on the wire whose PubAck has not come yet (as nats-py's method of the same name)."""
        return len(self._unsettled_appends())

    async def publish_async_completed(self) -> None:
        """Wait until every append made so far is acknowledged or has failed."""
        while pending := self._unsettled_appends():
            await asyncio.wait(pending)

    async def direct_get_last(self, stream: str, subject: str, timeout: float | None = None) -> Msg | None:
        """The last message on `subject` in `stream` (a stream with direct gets allowed), None if there is none."""
        fut = await self._send(f"{self._prefix}.DIRECT.GET.{stream}.{subject}", b"", None, is_get=True,
                               wait_stall=None)
        msg: Msg = await within(fut, self._timeout if timeout is None else timeout,
                            nats.errors.TimeoutError)
        status = msg.headers.get(_STATUS) if msg.headers else None
        if status == _NOT_FOUND:
            return None
        if status == _NO_RESPONDERS:
            raise nats.js.errors.NoStreamResponseError()
        if status:
            description = msg.headers.get("Description", "") if msg.headers else ""
            raise nats.js.errors.APIError(code=int(status) if status.isdigit() else None, description=description)
        return msg
