"""The agent runtime: pulls its type's requests, confirms receipt, runs the handler, answers.

Order for each request — the receipt comes before the work, the JetStream ack after the answer:
  decode + validate → ACK (sent; the lookup and the handler run during its round trip) → handler
  (heartbeats keep the message ours) → ACK confirmed in the ledger → result recorded by idempotency
  key and RESPONSE, pipelined → both confirmed in the ledger → JetStream ack.
Every failure becomes an ERROR envelope; nothing a request contains can stop the agent serving.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any

import nats.errors
from nats.aio.msg import Msg

from ledgerbus.agents.context import Context, sub_requester
from ledgerbus.agents.directory import Announcer, Directory, InstanceInfo, describe
from ledgerbus.agents.rejection import reject_raw
from ledgerbus.agents.results import Recorded, ResultStore
from ledgerbus.agents.sdk import Agent, AgentError, Registration
from ledgerbus.aio import cancel_and_wait, expire_at
from ledgerbus.bus.connection import Bus
from ledgerbus.bus.streams import ConsumerSettings, consumer_name
from ledgerbus.errors import InvalidMessage
from ledgerbus.ids import now_ms, uuid7
from ledgerbus.schemas.codes import Action, ErrorCode
from ledgerbus.schemas.envelope import Envelope, ErrorInfo, answer
from ledgerbus.tracing import instrument as tracing
from ledgerbus.security.binding import check_sender
from ledgerbus.security.deadletters import DeadLetterWatcher

log = logging.getLogger("ledgerbus.agent")


#: How much of an unsendable ERROR's message (and of its details' repr) is kept.
_MAX_ERROR_TEXT = 4096


async def _nak(msg: Msg) -> None:
    try:
        await msg.nak()
    except Exception as exc:  # unacked all the same: redelivered after AckWait
        log.debug("nak failed: %s", exc)


def _retrieve(fut: "asyncio.Future[Any]") -> None:
    """Mark a pipelined append's failure as seen (it is still raised to whoever awaits the future)."""
    if not fut.cancelled():
        fut.exception()


class _Heartbeat:
    """In-progress acks every `interval` while a handler runs.

    A timer rather than a task per request: most handlers finish long before the first beat, and
    creating, starting and cancelling a task for each of them is measurable on the hot path.
    """

    def __init__(self, msg: Msg, interval: float) -> None:
        self._msg = msg
        self._interval = interval
        self._loop = asyncio.get_running_loop()
        self._sending: asyncio.Task[None] | None = None
        self._timer = self._loop.call_later(interval, self._beat)

    def _beat(self) -> None:
        self._sending = self._loop.create_task(self._send())
        self._timer = self._loop.call_later(self._interval, self._beat)

    async def _send(self) -> None:
        try:
            await self._msg.in_progress()
        except Exception:
            self._timer.cancel()  # the connection is gone: redelivery decides, not us

    def cancel(self) -> None:
        self._timer.cancel()
        if self._sending is not None:
            self._sending.cancel()


class AgentRuntime:
    """Runs one instance of an agent type. Instances of a type share one durable consumer."""

    def __init__(
        self,
        agent: Agent,
        bus: Bus,
        *,
        instance: str | None = None,
        concurrency: int = 16,
        consumer: ConsumerSettings | None = None,
        idempotent: bool = True,
        fetch_timeout: float = 1.0,
        announce: bool = True,
        dead_letters: bool = True,
    ) -> None:
        self.agent = agent
        self.bus = bus
        self.instance = instance or f"{agent.name}-{socket.gethostname()}-{os.getpid()}-{uuid7()[-6:]}"
        self.concurrency = concurrency
        self.consumer = consumer or ConsumerSettings()
        self.results = ResultStore(bus) if idempotent else None
        self.fetch_timeout = fetch_timeout
        self.publish_timeout = 5.0  # for a pipelined append's PubAck, like Bus.publish's default
        self.handled = 0
        self.inflight: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(concurrency)
        self._stopping = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._sub: Any = None
        self._announcer: Announcer | None = None
        self.announce = announce
        # Turns MaxDeliver advisories for this type's consumer into ERROR DEAD_LETTER (one per letter: queue group).
        # A secured agent may not read the ledger, so there a client (the orchestrator) runs the watcher.
        self.dead_letters: DeadLetterWatcher | None = (
            DeadLetterWatcher(bus, consumer=consumer_name(agent.name), sender=agent.name, queue=f"deadletters-{agent.name}")
            if dead_letters and getattr(bus, "may_watch_dead_letters", True) else None
        )

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> "AgentRuntime":
        self._sub = await self.bus.agent_consumer(self.agent.name, self.consumer)
        if self.results is not None:
            await self.results._bucket()
        if self.announce:
            ts = now_ms()
            info = InstanceInfo(agent=self.agent.name, instance=self.instance, capabilities=describe(self.agent),
                                started_at=ts, seen_at=ts, concurrency=self.concurrency)
            self._announcer = Announcer(Directory(self.bus), info, stats=lambda: (self.handled, len(self.inflight)))
            await self._announcer.start()
        if self.dead_letters is not None:
            await self.dead_letters.start()
        self._loop_task = asyncio.create_task(self._pull_loop(), name=f"agent-{self.instance}")
        return self

    async def stop(self, *, drain: bool = True, timeout: float = 30.0) -> None:
        """Stop pulling; with `drain`, let in-flight tasks finish (up to `timeout`) before returning."""
        self._stopping.set()
        # The loop only ever waits in fetch or for a slot: cancelling it stops pulling at once. A message
        # caught mid-fetch is redelivered to another instance after AckWait.
        await cancel_and_wait(self._loop_task)
        if self.dead_letters is not None:
            await self.dead_letters.stop()
        if self._announcer is not None:
            try:
                await self._announcer.stop()
            except Exception:
                pass
            self._announcer = None
        if self.inflight:
            if drain:
                await asyncio.wait(list(self.inflight), timeout=timeout)
            for t in list(self.inflight):
                t.cancel()

    async def __aenter__(self) -> "AgentRuntime":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _pull_loop(self) -> None:
        while not self._stopping.is_set():
            await self._slots.acquire()
            # Fetch as many as there are free slots, so one slow handler never blocks the others.
            free = 1
            while free < self.concurrency and not self._slots.locked():
                await self._slots.acquire()
                free += 1
            try:
                msgs = await self._sub.fetch(free, timeout=self.fetch_timeout)
            except nats.errors.TimeoutError:
                msgs = []
            except (nats.errors.ConnectionClosedError, asyncio.CancelledError):
                for _ in range(free):
                    self._slots.release()
                return
            except Exception as exc:  # reconnecting: keep trying
                log.warning("%s: fetch failed: %s", self.instance, exc)
                msgs = []
                await asyncio.sleep(0.2)
            for _ in range(free - len(msgs)):
                self._slots.release()
            for msg in msgs[free:]:
                # nats-py hands over every message already waiting (a pull that outlived its fetch), even
                # past the batch asked for: beyond the free slots, give them back for redelivery.
                await _nak(msg)
            for msg in msgs[:free]:
                task = asyncio.create_task(self._guarded(msg))
                self.inflight.add(task)
                task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.inflight.discard(task)
        self._slots.release()

    async def _guarded(self, msg: Msg) -> None:
        try:
            await self.handle(msg)
        except Exception:  # the last line of isolation: log, never let it reach the loop
            log.exception("%s: unexpected failure handling %s", self.instance, msg.subject)

    # -- one request ------------------------------------------------------------------------

    async def handle(self, msg: Msg) -> None:
        try:
            req = self.bus.codec.decode(msg.data)
            check_sender(self.bus, req, msg.subject, msg.data, msg.headers)  # SPOOFED_SENDER on a secured bus
        except InvalidMessage as exc:
            await self._reject_raw(msg, exc)
            return
        # A CONSUMER span under the sender's (traceparent header); off, it costs one flag check.
        with tracing.process_span(self.bus.subjects.prefix, req, msg.headers, agent=self.agent.name,
                                  instance=self.instance):
            await self._handle(req, msg)

    async def _handle(self, req: Envelope, msg: Msg) -> None:
        reg = self.agent.handlers.get(req.capability)
        if req.action is not Action.REQUEST or req.recipient != self.agent.name:
            await self._error(req, msg, ErrorCode.INVALID_MESSAGE, f"{self.agent.name} takes REQUESTs addressed to it, not {req.action.value} for {req.recipient}")
            return
        if reg is None:
            await self._error(
                req, msg, ErrorCode.UNKNOWN_CAPABILITY,
                f"agent {self.agent.name!r} has no capability {req.capability!r}; it offers {', '.join(self.agent.capabilities)}",
            )
            return
        if req.deadline is not None and now_ms() > req.deadline:
            await self._error(req, msg, ErrorCode.DEADLINE_EXCEEDED, f"deadline passed {now_ms() - req.deadline} ms before the request was taken")
            return
        try:
            value = reg.capability.validate_input(req.payload)
        except InvalidMessage as exc:
            await self._error(req, msg, exc.code, exc.reason, details={"path": exc.path})
            return
        # The receipt goes out before the work, pipelined: the record lookup and the handler run during its
        # round trip, and it is confirmed stored before any answer (one stream, one connection: kept in order).
        receipt = await self.bus.publish_async(answer(req, Action.ACK, payload={"instance": self.instance}))
        receipt.add_done_callback(_retrieve)  # if the lookup fails first, nobody else awaits the receipt
        if self.results is not None:
            rec = await self.results.get(self.agent.name, req.key)
            if rec is not None:
                # Already done under this idempotency key: answer again, do not run the handler again.
                await self._confirm(receipt)
                await self.bus.publish(answer(req, Action.RESPONSE, payload=rec.payload))
                await msg.ack()
                return
        await self._run(req, msg, reg, value, receipt)

    async def _confirm(self, *pending: "asyncio.Future[Any] | None") -> None:
        """Wait until pipelined appends are stored; a PubAck that never comes must not hang the task."""
        futs = [f for f in pending if f is not None]
        # Awaiting the futures themselves (not asyncio.wait or asyncio.timeout): no waiter, callbacks
        # or task cancellation per step; the timer fails what is still pending.
        timer = expire_at(asyncio.get_running_loop().time() + self.publish_timeout, *futs)
        try:
            for f in futs:
                await f
        except BaseException:
            for f in futs:
                if f.done():
                    if not f.cancelled():
                        f.exception()  # retrieved: asyncio would log an unretrieved one as an error
                else:
                    f.cancel()
            raise
        finally:
            timer.cancel()

    async def _run(self, req: Envelope, msg: Msg, reg: Registration, value: Any,
                   receipt: "asyncio.Future[Any] | None" = None) -> None:
        async def progress(payload: dict[str, Any]) -> None:
            await self.bus.publish(answer(req, Action.PROGRESS, payload=payload))
            await msg.in_progress()

        ctx = Context(req, agent=self.agent.name, instance=self.instance, progress=progress,
                      requester=sub_requester(self.bus, self.agent.name))
        heartbeat = _Heartbeat(msg, max(self.consumer.ack_wait / 3, 0.5))
        try:
            out = await (reg.handler(value, ctx) if reg.takes_context else reg.handler(value))
        except AgentError as exc:
            await self._confirm(receipt)
            await self._error(req, msg, exc.code, exc.message, retryable=exc.retryable, details=exc.details)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._confirm(receipt)
            await self._error(
                req, msg, ErrorCode.HANDLER_ERROR, f"{type(exc).__name__}: {exc}",
                retryable=getattr(exc, "retryable", False),
            )
            return
        finally:
            heartbeat.cancel()
        try:
            payload = reg.capability.output.dump(reg.capability.validate_output(reg.capability.output.dump(out)))
        except InvalidMessage as exc:
            await self._confirm(receipt)
            await self._error(req, msg, ErrorCode.INVALID_OUTPUT, f"handler returned an invalid result: {exc.reason}", details={"path": exc.path})
            return
        except Exception as exc:  # not even dumpable (None for a model, a set, an object): the handler's bug
            await self._confirm(receipt)
            await self._error(req, msg, ErrorCode.INVALID_OUTPUT,
                              f"handler returned a result that cannot be serialised: {type(exc).__name__}: {exc}")
            return
        resp = answer(req, Action.RESPONSE, payload=payload)
        try:
            # Refused before it is recorded: a stored oversized result would fail every redelivery the same way.
            self.bus.codec.encode(resp)
        except InvalidMessage as exc:
            await self._confirm(receipt)
            await self._error(req, msg, exc.code, f"the handler's result cannot be sent: {exc.reason}", details=exc.details)
            return
        except Exception as exc:  # a value msgspec cannot encode inside a dict payload
            await self._confirm(receipt)
            await self._error(req, msg, ErrorCode.INVALID_OUTPUT,
                              f"the handler's result cannot be encoded as JSON: {type(exc).__name__}: {exc}")
            return
        # The record goes on the wire before the answer; both pipelined, the JetStream ack only once all are stored.
        pending = [receipt]
        if self.results is not None:
            rec = Recorded(payload, resp.id, req.task_id, req.attempt)
            pending.append(await self.results.put_async(self.agent.name, req.key, rec))
        pending.append(await self.bus.publish_async(resp))
        await self._confirm(*pending)
        await msg.ack()
        self.handled += 1

    async def _error(
        self,
        req: Envelope,
        msg: Msg,
        code: ErrorCode | str,
        message: str,
        *,
        retryable: bool = False,
        details: dict[str, Any] | None = None,
    ) -> None:
        code = code.value if isinstance(code, ErrorCode) else code
        tracing.mark_error(code, message)
        err = ErrorInfo(code=code, message=message, retryable=retryable, details={k: v for k, v in (details or {}).items() if v is not None})
        env = answer(req, Action.ERROR, sender=self.agent.name, error=err)
        try:
            self.bus.codec.encode(env)
        except Exception:
            # An exception's message or an AgentError's details too large, or not JSON: still answer, or
            # the request would be redelivered and the handler run again for the same failure.
            env.error = ErrorInfo(code=code, message=message[:_MAX_ERROR_TEXT], retryable=retryable,
                                  details={"unencodable": repr(err.details)[:_MAX_ERROR_TEXT]} if err.details else {})
        await self.bus.publish(env)
        # The orchestrator decides about retries; JetStream redelivery is only for crashed instances.
        await msg.ack()

    async def _reject_raw(self, msg: Msg, exc: InvalidMessage) -> None:
        """An undecodable request: record an ERROR addressed back to whoever we can tell sent it."""
        await reject_raw(self.bus, msg, exc, sender=self.agent.name)
