"""The agent runtime: pulls its type's requests, confirms receipt, runs the handler, answers.

Order for each request — the receipt comes before the work, the JetStream ack after the answer:
  decode + validate → ACK (sent; the claim and the handler run during its round trip) → claim of the
  requester's idempotency key (a duplicate waits here for the claimant's result instead of running the
  handler) → handler (heartbeats keep the message ours, renewals keep the claim) → ACK confirmed in the
  ledger → result recorded in place of the claim and RESPONSE, pipelined → both confirmed → JetStream ack.
Every request runs under a time limit (its deadline, else its capability's timeout): past it the handler
is cancelled and TIMED_OUT answered; one that ignores the cancellation is abandoned and its slot given back.
Every failure becomes an ERROR envelope; nothing a request contains can stop the agent serving.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any

from ledgerbus.agents.claims import settle
from ledgerbus.agents.context import Context, sub_requester
from ledgerbus.agents.directory import describe
from ledgerbus.bus.directory import Announcer, Directory, InstanceInfo
from ledgerbus.agents.job import Job, Phase
from ledgerbus.agents.limits import DEFAULT_TASK_TIMEOUT, task_limit
from ledgerbus.bus.rejection import reject_raw
from ledgerbus.agents.results import Claim, Recorded, ResultStore, slot
from ledgerbus.agents.sdk import Agent, AgentError, Registration
from ledgerbus.aio import cancel_and_wait, expire_at
from ledgerbus.bus.connection import Bus
from ledgerbus.bus.messages import Message as Msg
from ledgerbus.bus.streams import ConsumerSettings, consumer_name
from ledgerbus.errors import BusClosed, BusTimeout, InvalidMessage, PublishRefused, Refused
from ledgerbus.ids import now_ms, uuid7
from ledgerbus.schemas.codes import Action, ErrorCode
from ledgerbus.schemas.envelope import Envelope, ErrorInfo, answer
from ledgerbus.tracing import instrument as tracing
from ledgerbus.security.binding import check_sender
from ledgerbus.security.deadletters import DeadLetterWatcher

log = logging.getLogger("ledgerbus.agent")


#: How much of an unsendable ERROR's message (and of its details' repr) is kept.
_MAX_ERROR_TEXT = 4096
#: Fetch errors in a row (timeouts aside) after which the instance counts as unable to pull and
#: re-creates its type's consumer: one alone is usually a reconnect passing by.
_RECREATE_AFTER = 2
#: What the server or client refuses outright (too large, a bad request): publishing it again cannot
#: succeed, so the outcome becomes an ERROR that can be sent, never a redelivery loop.
def _refused(exc: BaseException) -> bool:
    # A Refused (PublishRefused, or the results bucket's) with code None: the client's max_payload; 400: a
    # limit of the server's, or a bad request.
    return isinstance(exc, (Refused, PublishRefused)) and exc.code in (None, 400)


async def _nak(msg: Msg) -> None:
    try:
        await msg.nak()
    except Exception as exc:  # unacked all the same: redelivered after AckWait
        log.debug("nak failed: %s", exc)


def _retrieve(fut: "asyncio.Future[Any]") -> None:
    """Mark a pipelined append's failure as seen (it is still raised to whoever awaits the future)."""
    if not fut.cancelled():
        fut.exception()


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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
        task_timeout: float = DEFAULT_TASK_TIMEOUT,
        claim_lease: float = 10.0,
        cancel_grace: float = 1.0,
    ) -> None:
        self.agent = agent
        self.bus = bus
        self.instance = instance or f"{agent.name}-{socket.gethostname()}-{os.getpid()}-{uuid7()[-6:]}"
        self.concurrency = concurrency
        self.consumer = consumer or ConsumerSettings()
        self.results = ResultStore(bus) if idempotent else None
        self.fetch_timeout = fetch_timeout
        self.publish_timeout = 5.0  # for a pipelined append's PubAck, like Bus.publish's default
        #: A request's limit when it has no deadline and its capability declares no timeout.
        self.task_timeout = task_timeout
        #: How long this instance's claim on a key stands without a renewal (renewed every third of it):
        #: a duplicate takes the key over once a dead claimant's lease has run out.
        self.claim_lease = claim_lease
        #: How long a cancelled handler has to end before it is abandoned.
        self.cancel_grace = cancel_grace
        self.handled = 0
        #: Handlers abandoned because they ignored their cancellation (still running, slot given back).
        self.abandoned = 0
        #: Why this instance cannot pull right now; None while it can (the directory entry says the same).
        self.pull_error: str | None = None
        self.inflight: set[asyncio.Task[None]] = set()
        self._zombies: set[asyncio.Task[None]] = set()  # abandoned handlers' tasks
        self._side: set[asyncio.Task[None]] = set()  # TIMED_OUT answers for abandoned handlers
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
            self._announcer = Announcer(Directory(self.bus), info, stats=self._stats)
            await self._announcer.start()
        if self.dead_letters is not None:
            await self.dead_letters.start()
        self._loop_task = asyncio.create_task(self._pull_loop(), name=f"agent-{self.instance}")
        return self

    def _stats(self, info: InstanceInfo) -> None:
        info.handled, info.inflight = self.handled, len(self.inflight)
        info.abandoned, info.pull_error = self.abandoned, self.pull_error

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
        if self._side:
            await asyncio.wait(list(self._side), timeout=self.publish_timeout)
        for t in list(self._zombies):
            t.cancel()  # asked once more; they have shown they may not listen, so not waited for

    async def __aenter__(self) -> "AgentRuntime":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _pull_loop(self) -> None:
        failures = 0  # fetches failed in a row, other than timeouts
        while not self._stopping.is_set():
            await self._slots.acquire()
            # Fetch as many as there are free slots, so one slow handler never blocks the others.
            free = 1
            while free < self.concurrency and not self._slots.locked():
                await self._slots.acquire()
                free += 1
            try:
                msgs = await self._sub.fetch(free, timeout=self.fetch_timeout)
            except BusTimeout:
                msgs = []
                failures = self._pulled(failures)
            except (BusClosed, asyncio.CancelledError):
                for _ in range(free):
                    self._slots.release()
                return
            except Exception as exc:  # reconnecting, or the consumer is gone
                for _ in range(free):
                    self._slots.release()
                failures += 1
                log.warning("%s: fetch failed: %s", self.instance, _describe(exc))
                if failures >= _RECREATE_AFTER:
                    await self._recreate_consumer(exc)
                await asyncio.sleep(min(0.2 * failures, 2.0))
                continue
            failures = self._pulled(failures)
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

    def _pulled(self, failures: int) -> int:
        """A fetch reached the consumer: the instance can pull (again)."""
        if self.pull_error is not None:
            log.warning("%s: pulling again", self.instance)
            self.pull_error = None
            if self._announcer is not None:
                self._announcer.refresh()
        return 0

    async def _recreate_consumer(self, exc: BaseException) -> None:
        """Not a passing reconnect: the type's consumer may be gone (deleted, lost with its stream), and
        fetching from it would fail forever. Create it again (or bind to the one that now exists) and
        say in the directory, until a fetch succeeds, that this instance cannot pull."""
        reason = f"cannot pull from consumer {consumer_name(self.agent.name)}: {_describe(exc)}"
        try:
            sub = await self.bus.agent_consumer(self.agent.name, self.consumer)
        except Exception as again:
            reason += f"; re-creating it failed: {_describe(again)}"
        else:
            log.warning("%s: re-created consumer %s", self.instance, consumer_name(self.agent.name))
            old, self._sub = self._sub, sub
            try:
                await old.unsubscribe()
            except Exception as gone:  # its inbox only; the consumer it was bound to is already replaced
                log.debug("%s: could not drop the old subscription: %s", self.instance, gone)
        if reason != self.pull_error:
            self.pull_error = reason
            if self._announcer is not None:
                self._announcer.refresh()

    def _done(self, task: asyncio.Task[None]) -> None:
        if task in self._zombies:  # its slot was given back when it was abandoned
            self._zombies.discard(task)
            return
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
        now = now_ms()
        if req.deadline is not None and now > req.deadline:
            await self._error(req, msg, ErrorCode.DEADLINE_EXCEEDED, f"deadline passed {now - req.deadline} ms before the request was taken")
            return
        try:
            value = reg.capability.validate_input(req.payload)
        except InvalidMessage as exc:
            await self._error(req, msg, exc.code, exc.reason, details={"path": exc.path})
            return
        # The receipt goes out before the work, pipelined: the claim and the handler run during its round
        # trip, and it is confirmed stored before any answer (one stream, one connection: kept in order).
        receipt = await self.bus.publish_async(answer(req, Action.ACK, payload={"instance": self.instance}))
        receipt.add_done_callback(_retrieve)  # if the claim fails first, nobody else awaits the receipt
        job = Job(req, msg, receipt, limit=task_limit(req.deadline, reg.timeout, self.task_timeout, now),
                  heartbeat=max(self.consumer.ack_wait / 3, 0.5))
        job.timer = asyncio.get_running_loop().call_later(job.limit, self._expire, job)
        try:
            await self._serve(job, reg, value)
        finally:
            job.stop_timers()

    async def _serve(self, job: Job, reg: Registration, value: Any) -> None:
        if self.results is not None:
            try:
                rec = await self._claim(job)
            except asyncio.CancelledError:
                if not job.expired:
                    raise
                await self._timed_out(job)
                return
            job.phase = Phase.ANSWERING
            if job.expired:
                await self._timed_out(job)
                return
            if rec is not None:
                # Already done under this requester's key: answer again, do not run the handler again.
                await self._confirm(job.receipt)
                await self.bus.publish(answer(job.req, Action.RESPONSE, payload=rec.payload))
                await job.msg.ack()
                return
        await self._run(job, reg, value)

    async def _claim(self, job: Job) -> Recorded | None:
        """Claim the key for this request's handler; or the result of whoever holds it, once they have one."""
        assert self.results is not None
        req = job.req
        # The requester identity is the envelope's sender: verified against its signature on a secured bus.
        job.key = slot(self.agent.name, req.sender, req.key)
        job.claim = Claim(self.instance, self.claim_lease, req.task_id, req.attempt)
        rev = await self.results.claim(job.key, job.claim)
        if rev is None:
            # A duplicate, a retry or a redelivery: the key has a result, a live claim, or a dead one.
            async def still_waiting(holder: Claim) -> None:
                await self.bus.publish(answer(req, Action.PROGRESS, payload={"waitingFor": holder.instance}))

            first = await self.results.read(job.key)
            rec, rev = await settle(self.results, job.key, job.claim, first, on_renewal=still_waiting,
                                    clock=asyncio.get_running_loop().time)
            if rec is not None:
                return rec
        job.revision = rev
        self._schedule_renewal(job)
        return None

    def _schedule_renewal(self, job: Job) -> None:
        job.renewer = asyncio.get_running_loop().call_later(self.claim_lease / 3, self._renew_soon, job)

    def _renew_soon(self, job: Job) -> None:
        if job.cancellable:
            job.renewing = asyncio.create_task(self._renew(job))

    async def _renew(self, job: Job) -> None:
        assert self.results is not None and job.key is not None and job.claim is not None
        try:
            rev = await self.results.claim(job.key, job.claim, last=job.revision)
        except Exception as exc:  # a reconnect: the next renewal may do, the lease leaves room for two misses
            log.debug("%s: claim renewal failed: %s", self.instance, exc)
            rev = job.revision
        if rev is None:
            if job.cancellable:
                log.warning("%s: lost its claim on %s to another instance (renewals missed for a lease)",
                            self.instance, job.key)
            job.revision = 0
            return
        job.revision = rev
        if job.cancellable:
            self._schedule_renewal(job)

    async def _release(self, job: Job) -> None:
        """Give the key up (the handler ended without a result), so a retry can claim it at once."""
        if job.renewer is not None:
            job.renewer.cancel()
        if job.renewing is not None and not job.renewing.done():
            await asyncio.wait([job.renewing], timeout=self.publish_timeout)
        if self.results is None or job.key is None or not job.revision:
            return
        try:
            await self.results.release(job.key, job.revision)
        except Exception as exc:  # left to lapse: a duplicate takes it over after the lease
            log.warning("%s: could not release the claim on %s: %s", self.instance, job.key, exc)
        job.revision = 0

    # -- the time limit -----------------------------------------------------------------------

    def _expire(self, job: Job) -> None:
        """The request's limit has passed: cancel its handler (or its wait), and give it a grace to end."""
        if not job.cancellable:
            return  # answering already, within the publish timeout
        job.expired = True
        job.heartbeat.cancel()  # the message must not be kept alive past its limit
        job.task.cancel()
        job.timer = asyncio.get_running_loop().call_later(self.cancel_grace, self._abandon, job)

    def _abandon(self, job: Job) -> None:
        """The handler ignored its cancellation: answer for it, and give its slot back."""
        task = job.task
        if not job.cancellable or task.done():
            return
        job.abandoned = True
        self.abandoned += 1
        log.warning("%s: abandoned the handler of %s (task %s): it ignored its cancellation %.1fs after "
                    "its %.3gs limit", self.instance, job.req.capability, job.req.task_id, self.cancel_grace,
                    job.limit)
        self.inflight.discard(task)
        self._zombies.add(task)
        self._slots.release()
        side = asyncio.create_task(self._timed_out(job))
        self._side.add(side)
        side.add_done_callback(self._side_done)
        if self._announcer is not None:
            self._announcer.refresh()

    def _side_done(self, task: asyncio.Task[None]) -> None:
        self._side.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("%s: could not answer an abandoned task: %s", self.instance, task.exception())

    async def _timed_out(self, job: Job) -> None:
        if job.answered:
            return
        job.answered = True
        job.phase = Phase.ANSWERING
        task = asyncio.current_task()
        if task is job.task and task.cancelling():
            task.uncancel()  # the cancellation was the limit's, and it has been dealt with
        job.stop_timers()
        req = job.req
        await self._release(job)
        await self._confirm(job.receipt)
        what = ("the handler ignored its cancellation and was abandoned" if job.abandoned
                else "the handler was cancelled")
        await self._error(
            req, job.msg, ErrorCode.TIMED_OUT,
            f"{req.capability} ran past its limit of {job.limit:.3g}s "
            f"({'the request deadline' if req.deadline is not None else 'the capability timeout'}); {what}",
            retryable=True, details={"limitSeconds": job.limit, "abandoned": job.abandoned},
        )

    # -- the handler and its outcome ------------------------------------------------------------

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

    async def _run(self, job: Job, reg: Registration, value: Any) -> None:
        req, msg = job.req, job.msg

        async def progress(payload: dict[str, Any]) -> None:
            if job.answered:
                return  # past its limit (an abandoned handler): the request has had its answer
            await self.bus.publish(answer(req, Action.PROGRESS, payload=payload))
            await msg.in_progress()

        ctx = Context(req, agent=self.agent.name, instance=self.instance, progress=progress,
                      requester=sub_requester(self.bus, self.agent.name))
        job.phase = Phase.RUNNING
        try:
            out = await (reg.handler(value, ctx) if reg.takes_context else reg.handler(value))
        except asyncio.CancelledError:
            if not job.expired:
                raise
            await self._timed_out(job)
            return
        except AgentError as exc:
            if await self._late(job):
                return
            if exc.sender is None:  # the handler's own answer
                await self._fail(job, exc.code, exc.message, retryable=exc.retryable, details=exc.details)
            else:  # one a sub-request received and the handler let through: its failure, as any exception
                await self._fail(job, ErrorCode.HANDLER_ERROR, f"RemoteError: {exc}", retryable=exc.retryable)
            return
        except Exception as exc:
            if await self._late(job):
                return
            await self._fail(job, ErrorCode.HANDLER_ERROR, f"{type(exc).__name__}: {exc}",
                             retryable=getattr(exc, "retryable", False))
            return
        if await self._late(job):
            return
        job.heartbeat.cancel()
        try:
            payload = reg.capability.output.dump(reg.capability.validate_output(reg.capability.output.dump(out)))
        except InvalidMessage as exc:
            await self._fail(job, ErrorCode.INVALID_OUTPUT, f"handler returned an invalid result: {exc.reason}", details={"path": exc.path})
            return
        except Exception as exc:  # not even dumpable (None for a model, a set, an object): the handler's bug
            await self._fail(job, ErrorCode.INVALID_OUTPUT,
                             f"handler returned a result that cannot be serialised: {type(exc).__name__}: {exc}")
            return
        resp = answer(req, Action.RESPONSE, payload=payload)
        try:
            # Refused before it is recorded: a stored oversized result would fail every redelivery the same way.
            self.bus.codec.encode(resp)
        except InvalidMessage as exc:
            await self._fail(job, exc.code, f"the handler's result cannot be sent: {exc.reason}", details=exc.details)
            return
        except Exception as exc:  # a value msgspec cannot encode inside a dict payload
            await self._fail(job, ErrorCode.INVALID_OUTPUT,
                             f"the handler's result cannot be encoded as JSON: {type(exc).__name__}: {exc}")
            return
        # The record goes on the wire before the answer, in the claim's place; both pipelined, the
        # JetStream ack only once all are stored.
        pending = [job.receipt]
        try:
            if self.results is not None and job.key is not None:
                if job.renewer is not None:
                    job.renewer.cancel()
                rec = Recorded(payload, resp.id, req.task_id, req.attempt)
                pending.append(await self.results.put_async(job.key, rec))
            pending.append(await self.bus.publish_async(resp))
            await self._confirm(*pending)
        except Exception as exc:
            if not _refused(exc):
                raise
            # The server (or the client, for its max_payload) will never take this answer: say so with an
            # ERROR that fits, rather than leave the request to be redelivered until it is dead-lettered.
            await self._fail(job, ErrorCode.INVALID_OUTPUT,
                             f"the handler's result could not be published: {_describe(exc)}")
            return
        await msg.ack()
        self.handled += 1

    async def _late(self, job: Job) -> bool:
        """True when the request's limit passed while its handler ran on (it returned or raised after
        swallowing the cancellation): the outcome is TIMED_OUT, and an abandoned handler's is dropped."""
        job.phase = Phase.ANSWERING
        if not job.expired:
            return False
        await self._timed_out(job)
        return True

    async def _fail(self, job: Job, code: ErrorCode | str, message: str, *, retryable: bool = False,
                    details: dict[str, Any] | None = None) -> None:
        """The handler ended without a result: free the key for a retry, then answer with the ERROR."""
        job.answered = True
        await self._release(job)
        await self._confirm(job.receipt)
        await self._error(job.req, job.msg, code, message, retryable=retryable, details=details)

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
        try:
            await self.bus.publish(env)
        except Exception as exc:
            if not _refused(exc):
                raise
            # Refused by the server as it is: the smallest ERROR that still says what happened. If even
            # that is refused the request stays unacked, is redelivered, and ends as a dead letter.
            log.warning("%s: the ERROR for %s was refused (%s); sending it shortened", self.instance, req.id, exc)
            env.error = ErrorInfo(code=code, message=f"{message[:512]} (shortened: {_describe(exc)[:256]})",
                                  retryable=retryable)
            env.traceparent = None
            await self.bus.publish(env)
        # The orchestrator decides about retries; JetStream redelivery is only for crashed instances.
        await msg.ack()

    async def _reject_raw(self, msg: Msg, exc: InvalidMessage) -> None:
        """An undecodable request: record an ERROR addressed back to whoever we can tell sent it."""
        await reject_raw(self.bus, msg, exc, sender=self.agent.name)
