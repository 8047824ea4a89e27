"""The receipt rule in virtual time: a request queued behind busy instances is backpressure, not NO_RECEIPT.

The clock is a FakeClock moved by hand; queue views are what the orchestrator reads from the type's
consumer and the directory when a receipt window runs out.
"""

from __future__ import annotations

import asyncio

import pytest

from fakeclock import FakeClock
from ledger_histories import History

from ledgerbus.eventstore.fold import TaskState, TaskStatus, fold
from ledgerbus.orchestrator.backpressure import CapacityGate
from ledgerbus.orchestrator.policy import TaskPolicy
from ledgerbus.orchestrator.receipts import QueueView, ReceiptWindow
from ledgerbus.orchestrator.stalls import check_task, next_check_ms

T0 = 1_000_000
POLICY = TaskPolicy(receipt_timeout=2.0, stall_after=10.0, timeout=30.0)
SEQ = 500  # the REQUEST's stream sequence, from its PubAck


def ms(clock: FakeClock) -> int:
    return round(clock() * 1000)


def sent() -> tuple[History, TaskState, FakeClock]:
    clock = FakeClock(T0 / 1000)
    h = History(start_ms=T0, step_ms=0)
    h.request("t1", "research")
    return h, fold(h.envelopes).tasks["t1"], clock


def busy(clock: FakeClock, delivered_seq: int = SEQ - 40) -> QueueView:
    """One live instance, all its slots taken, requests waiting behind them."""
    return QueueView(ms(clock), live_instances=1, num_pending=40, num_waiting=0, num_ack_pending=16,
                     delivered_seq=delivered_seq)


def test_a_request_queued_behind_a_busy_type_is_backpressure_not_no_receipt() -> None:
    h, t, clock = sent()
    window = ReceiptWindow(t.sent_at or T0)
    for _ in range(5):  # ten seconds in the queue: five receipt windows run out, none is a NO_RECEIPT
        due = next_check_ms(t, POLICY, receipt_since=window.since)
        clock.advance((due - ms(clock)) / 1000)
        assert check_task(t, ms(clock), POLICY, receipt_since=window.since) == "NO_RECEIPT"
        assert window.judge(busy(clock), SEQ, ms(clock)) is False
        assert window.since == ms(clock)
        assert check_task(t, ms(clock), POLICY, receipt_since=window.since) is None
    assert ms(clock) == T0 + 10_000 and window.extensions == 5
    # The instance takes it at last: its ACK comes well within a window of that.
    clock.advance(2.0)
    assert window.judge(busy(clock, delivered_seq=SEQ), SEQ, ms(clock)) is False
    h.at(ms(clock) + 300).ack(h.envelopes[0])
    acked = fold(h.envelopes).tasks["t1"]
    assert acked.status is TaskStatus.ACKED
    assert check_task(acked, ms(clock) + 300, POLICY, receipt_since=window.since) is None


def test_waiting_in_the_queue_is_still_bounded_by_the_task_timeout() -> None:
    _, t, clock = sent()
    window = ReceiptWindow(t.sent_at or T0)
    while (code := check_task(t, ms(clock), POLICY, receipt_since=window.since)) != "TIMED_OUT":
        if code == "NO_RECEIPT":
            assert window.judge(busy(clock), SEQ, ms(clock)) is False
        clock.advance((next_check_ms(t, POLICY, receipt_since=window.since) - ms(clock)) / 1000)
    assert ms(clock) == T0 + 30_000  # from the send, not from the last time it was seen queued


@pytest.mark.parametrize("view", [
    QueueView(0, live_instances=0, num_pending=1, num_waiting=0, delivered_seq=SEQ - 1),  # no instance, nobody pulling
    QueueView(0, live_instances=None, num_pending=1, num_waiting=0, delivered_seq=SEQ - 1),  # no directory, nobody pulling
    QueueView(0, consumer=False, live_instances=0),  # no instance ever started: no consumer
], ids=["no-live-instance", "no-directory-nobody-pulling", "no-consumer"])
def test_nobody_there_is_no_receipt_within_the_receipt_timeout(view: QueueView) -> None:
    _, t, clock = sent()
    window = ReceiptWindow(t.sent_at or T0)
    clock.advance(1.999)
    assert check_task(t, ms(clock), POLICY, receipt_since=window.since) is None
    clock.advance(0.001)
    assert check_task(t, ms(clock), POLICY, receipt_since=window.since) == "NO_RECEIPT"
    assert window.judge(view, SEQ, ms(clock)) is True
    assert ms(clock) == T0 + 2_000


def test_an_idle_pulling_instance_counts_as_there_without_a_directory() -> None:
    _, t, clock = sent()
    window = ReceiptWindow(t.sent_at or T0)
    clock.advance(2.0)
    pulling = QueueView(ms(clock), live_instances=None, num_pending=3, num_waiting=1, delivered_seq=SEQ - 3)
    assert window.judge(pulling, SEQ, ms(clock)) is False


def test_taken_but_never_acknowledged_is_no_receipt_one_window_after_it_was_seen_taken() -> None:
    _, t, clock = sent()
    window = ReceiptWindow(t.sent_at or T0)
    clock.advance(2.0)
    taken = busy(clock, delivered_seq=SEQ + 5)
    assert window.judge(taken, SEQ, ms(clock)) is False  # just handed over, maybe: its ACK may be on the way
    clock.advance((next_check_ms(t, POLICY, receipt_since=window.since) - ms(clock)) / 1000)
    assert check_task(t, ms(clock), POLICY, receipt_since=window.since) == "NO_RECEIPT"
    assert window.judge(busy(clock, delivered_seq=SEQ + 9), SEQ, ms(clock)) is True
    assert ms(clock) == T0 + 4_000


def test_without_the_sequence_undelivered_requests_of_the_type_say_queued() -> None:
    # A resumed attempt (sent by a predecessor): no PubAck, so the type's pending count decides.
    w = ReceiptWindow(T0)
    assert w.judge(QueueView(T0 + 2_000, live_instances=1, num_pending=7), None, T0 + 2_000) is False
    w2 = ReceiptWindow(T0)
    assert w2.judge(QueueView(T0 + 2_000, live_instances=1, num_pending=0), None, T0 + 2_000) is False
    assert w2.judge(QueueView(T0 + 4_000, live_instances=1, num_pending=0), None, T0 + 4_000) is True


# -- the capacity gate: backpressure at the orchestrator ------------------------------------------

async def until(pred, what: str) -> None:
    """Let the other tasks run until `pred()` holds (a bounded number of loop turns, no timers)."""
    for _ in range(1000):
        if pred():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


async def test_the_gate_holds_requests_beyond_the_types_capacity_first_come_first_served() -> None:
    gate = CapacityGate()
    for _ in range(2):
        assert await gate.acquire("research", 2) is True
    order: list[int] = []

    async def later(i: int) -> None:
        await gate.acquire("research", 2)
        order.append(i)

    waiters = [asyncio.create_task(later(i)) for i in range(3)]
    await until(lambda: gate.waiting("research") == 3, "three waiters")
    assert (gate.inflight("research"), order) == (2, [])
    gate.release("research")
    await asyncio.wait_for(waiters[0], 1)
    assert order == [0] and gate.inflight("research") == 2 and gate.waiting("research") == 2
    gate.release("research")
    gate.release("research")
    await asyncio.gather(*waiters)
    assert order == [0, 1, 2] and gate.inflight("research") == 2
    # Another type is not held back by this one.
    assert await gate.acquire("writing", 1) is True


async def test_a_type_of_unknown_capacity_is_not_held_back() -> None:
    gate = CapacityGate()
    for _ in range(100):
        assert await gate.acquire("ghost", None) is True
    assert gate.inflight("ghost") == 100


async def test_a_grown_capacity_lets_waiters_in_and_a_deadline_stops_the_wait() -> None:
    gate = CapacityGate()
    await gate.acquire("r", 1)
    waiter = asyncio.create_task(gate.acquire("r", 1))
    await until(lambda: gate.waiting("r") == 1, "a waiter")
    assert await gate.acquire("r", 3) is True  # a second instance came: room for the waiter and this one
    assert await waiter is True and gate.inflight("r") == 3
    # Full again: a caller whose deadline passes goes ahead rather than wait for ever.
    assert await gate.acquire("r", 3, timeout=0.01) is False
    assert gate.inflight("r") == 4


async def test_a_cancelled_waiter_gives_its_place_to_the_next() -> None:
    gate = CapacityGate()
    await gate.acquire("r", 1)
    first = asyncio.create_task(gate.acquire("r", 1))
    second = asyncio.create_task(gate.acquire("r", 1))
    await until(lambda: gate.waiting("r") == 2, "two waiters")
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    gate.release("r")
    assert await second is True and gate.inflight("r") == 1
