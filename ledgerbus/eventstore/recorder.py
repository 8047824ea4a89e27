"""The recorder: mirrors the JetStream LEDGER into SQLite through a durable consumer, in batches.

The SQLite file is its own checkpoint: the last mirrored stream sequence is committed in the same
transaction as the batch, so after a crash the recorder resumes exactly there — nothing skipped,
nothing stored twice — whatever the consumer had or had not been told.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from ledgerbus.aio import cancel_and_wait
from ledgerbus.bus.connection import Bus
from ledgerbus.bus.messages import stored_ms, stream_sequence
from ledgerbus.bus.streams import ConsumerSpec
from ledgerbus.errors import BusClosed, BusTimeout, InvalidMessage, NotFound
from ledgerbus.eventstore.base import Rejected, StoredEvent
from ledgerbus.eventstore.sqlite import SQLiteEventStore
from ledgerbus.security.binding import check_sender

log = logging.getLogger("ledgerbus.recorder")


# Fetch errors in a row (timeouts aside) after which the consumer is re-created: one alone is usually a
# reconnect that passes by itself.
_RECREATE_AFTER = 2


class _Retry(Exception):
    """This batch cannot be completed now; nothing of it is committed and it is read again."""


class Recorder:
    def __init__(
        self,
        bus: Bus,
        store: SQLiteEventStore,
        *,
        durable: str = "recorder",
        batch: int = 1000,
        fetch_timeout: float = 0.5,
    ) -> None:
        self.bus = bus
        self.store = store
        self.durable = durable
        self.batch = batch
        self.fetch_timeout = fetch_timeout
        self.recorded_seq = 0
        self.gaps: list[tuple[int, int]] = []
        self.write_errors = 0  # failed SQLite writes, each retried  # (first missing, last missing) stream sequences
        self._new_gaps: list[tuple[int, int]] = []  # found in the batch being written; stored with it
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._progress = asyncio.Condition()
        # One writer thread: SQLite writes stay off the event loop and in order.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledgerbus-recorder")

    async def _consumer(self) -> object:
        """(Re)create the durable consumer at the checkpoint + 1.

        The SQLite checkpoint is the truth, not the consumer's ack floor: a fetch cancelled at shutdown
        leaves a pull request on the server that can swallow the next message, and AckAll would then
        acknowledge past it. Repositioning on every start makes that harmless.
        """
        try:
            await self.bus.delete_consumer(self.durable)
        except NotFound:
            pass
        await self.bus.add_consumer(
            ConsumerSpec(
                durable_name=self.durable,
                start_seq=self.recorded_seq + 1,
                ack="all",
                ack_wait=30,
                max_ack_pending=-1,
                filter_subjects=(self.bus.subjects.all(),),
            ),
        )
        return await self.bus.bind(self.durable)

    async def _fill(self, first: int, last: int, events: list[StoredEvent], rejects: list[Rejected]) -> None:
        """Fetch sequences the consumer skipped directly from the stream; only what is truly gone is a gap."""
        missing_from: int | None = None
        for seq in range(first, last + 1):
            try:
                raw = await self.bus.get_msg(seq)
            except NotFound:
                raw = None
            except Exception as exc:
                # Not "gone", just not reachable now (a restart, a leader election): recording a gap here
                # would move the checkpoint past envelopes the stream still holds.
                raise _Retry(f"could not fetch stream sequence {seq}: {exc or type(exc).__name__}") from exc
            if raw is None or raw.data is None:
                missing_from = seq if missing_from is None else missing_from
                continue
            if missing_from is not None:
                self._gap(missing_from, seq - 1)
                missing_from = None
            self._decode(seq, raw.subject, raw.data, events, rejects, raw.headers, raw.stored_ms)
        if missing_from is not None:
            self._gap(missing_from, last)

    def _gap(self, first: int, last: int) -> None:
        self.gaps.append((first, last))
        self._new_gaps.append((first, last))
        log.warning("ledger gap: stream sequences %d..%d are not in the stream (removed by retention?)", first, last)

    def _decode(self, seq: int, subject: str, data: bytes, events: list[StoredEvent], rejects: list[Rejected],
                headers: dict[str, str] | None = None, stored_at: int | None = None) -> None:
        try:
            env = self.bus.codec.decode(data)
            check_sender(self.bus, env, subject, data, headers)  # a forged sender is a reject (SPOOFED_SENDER), not an event
            events.append(StoredEvent(seq, env, data, stored_at))
        except InvalidMessage as exc:
            rejects.append(Rejected(seq, subject, data, exc.code, exc.reason))

    async def start(self) -> "Recorder":
        loop = asyncio.get_running_loop()
        self.recorded_seq = await loop.run_in_executor(self._writer, self.store.checkpoint)
        sub = await self._consumer()
        self._task = asyncio.create_task(self._run(sub), name="ledgerbus-recorder")
        return self

    async def _reposition(self, sub: object) -> object:
        """A new consumer at the checkpoint + 1, or `sub` again if the server cannot make one yet."""
        try:
            new = await self._consumer()
        except Exception as exc:  # still unreachable: the next turn tries again
            log.warning("recorder could not reposition its consumer: %s", exc)
            return sub
        try:
            await sub.unsubscribe()  # type: ignore[attr-defined]
        except Exception as exc:  # its inbox only; the consumer it was bound to is already replaced
            log.debug("recorder could not drop its old subscription: %s", exc)
        return new

    async def _run(self, sub: object) -> None:
        loop = asyncio.get_running_loop()
        failures = 0  # fetches failed in a row, other than timeouts
        while not self._stopping.is_set():
            try:
                msgs = await sub.fetch(self.batch, timeout=self.fetch_timeout)  # type: ignore[attr-defined]
            except BusTimeout:
                failures = 0
                continue
            except (BusClosed, asyncio.CancelledError):
                return
            except Exception as exc:  # a reconnect in progress: try again shortly
                failures += 1
                log.warning("recorder fetch failed: %s", exc)
                await asyncio.sleep(0.2)
                if failures >= _RECREATE_AFTER:
                    # Not a passing reconnect: the consumer itself may be gone (deleted, or its re-creation
                    # lost in a leader election), and fetching from it would fail forever. Re-creating it
                    # at the checkpoint + 1 is always safe.
                    log.warning("recorder: re-creating consumer %r at sequence %d", self.durable,
                                self.recorded_seq + 1)
                    sub = await self._reposition(sub)
                continue
            failures = 0
            events: list[StoredEvent] = []
            rejects: list[Rejected] = []
            last = self.recorded_seq
            gaps_before = len(self.gaps)
            retry: _Retry | None = None
            for msg in msgs:
                seq = stream_sequence(msg)
                if seq <= last:
                    continue  # redelivered after a crash between commit and ack
                if seq != last + 1:
                    try:
                        await self._fill(last + 1, seq - 1, events, rejects)
                    except _Retry as err:
                        retry = err
                        break
                last = seq
                self._decode(seq, msg.subject, msg.data, events, rejects, msg.headers, stored_ms(msg))
            if retry is not None:
                # Nothing of this batch is committed: read it again from the checkpoint once the server answers.
                log.warning("recorder: %s; reading again from sequence %d", retry, self.recorded_seq + 1)
                del self.gaps[gaps_before:]
                self._new_gaps.clear()
                await asyncio.sleep(0.2)
                sub = await self._reposition(sub)
                continue
            if last > self.recorded_seq:
                gaps = list(self._new_gaps)
                delay = 0.1
                while True:
                    try:
                        await loop.run_in_executor(
                            self._writer, lambda: self.store.append(events, rejects=rejects, checkpoint=last, gaps=gaps)
                        )
                        break
                    except Exception as exc:
                        # Disk full, a locked file…: keep the batch (unacked, so JetStream keeps it too) and
                        # try again, rather than let the mirror stop for good.
                        self.write_errors += 1
                        log.error("recorder could not write to %s (%s); retrying in %.1fs", self.store.path, exc, delay)
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 5.0)
                self._new_gaps.clear()
            try:
                await msgs[-1].ack()
            except Exception as exc:  # the checkpoint in SQLite is the truth; a lost ack only means redelivery
                log.debug("recorder ack failed: %s", exc)
            async with self._progress:
                self.recorded_seq = last
                self._progress.notify_all()

    async def wait_for(self, seq: int, timeout: float = 10.0) -> None:
        """Wait until the mirror holds everything up to stream sequence `seq`."""
        async with self._progress:
            await asyncio.wait_for(self._progress.wait_for(lambda: self.recorded_seq >= seq), timeout)

    async def catch_up(self, timeout: float = 10.0, *, holding: Iterable[str] = ()) -> int:
        """Wait until the mirror holds everything the stream held when this was called, and each envelope
        id in `holding`; returns the stream sequence the mirror now holds everything up to.

        Pass the ids of envelopes you received: core NATS can deliver a message to a subscriber before
        JetStream has stored it, so the stream's last sequence, read just after, may not count it yet.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        info = await self.bus.stream_info()
        await self.wait_for(info.last_seq, timeout)
        wanted = set(holding)
        while wanted:
            seen = self.recorded_seq
            # On the writer thread: in order with the writes, and off the event loop.
            wanted -= await loop.run_in_executor(self._writer, self.store.holds, wanted)
            if wanted:
                await self.wait_for(seen + 1, max(deadline - loop.time(), 0.0))
        return self.recorded_seq

    async def stopped(self) -> None:
        """Return when the recorder ends by itself (its connection closed for good), so that a process
        running it can exit and be restarted instead of mirroring nothing."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def stop(self) -> None:
        self._stopping.set()
        # Safe to cancel anywhere: SQLite holds the checkpoint, and an unacked batch is redelivered and skipped.
        await cancel_and_wait(self._task)
        await asyncio.to_thread(self._writer.shutdown, wait=True)

    async def __aenter__(self) -> "Recorder":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
