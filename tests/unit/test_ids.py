"""UUIDv7 ids (RFC 9562): the format, monotonic order within a process, and the embedded time."""

from __future__ import annotations

import re
import threading
import uuid

import pytest

from ledgerbus import ids
from ledgerbus.ids import now_ms, uuid7, uuid7_time_ms

_FORMAT = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_format_is_rfc_9562_version_7() -> None:
    for _ in range(1000):
        value = uuid7()
        assert _FORMAT.match(value), value
        parsed = uuid.UUID(value)
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == value


def test_ids_are_valid_envelope_tokens() -> None:
    from ledgerbus.schemas.envelope import is_token

    assert is_token(uuid7())


def test_strictly_increasing_within_a_process() -> None:
    values = [uuid7() for _ in range(20_000)]  # many share a millisecond: the counter must order them
    assert values == sorted(values)
    assert len(set(values)) == len(values)


def test_strictly_increasing_across_threads() -> None:
    out: list[list[str]] = [[] for _ in range(4)]

    def work(bucket: list[str]) -> None:
        for _ in range(2000):
            bucket.append(uuid7())

    threads = [threading.Thread(target=work, args=(b,)) for b in out]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    everything = [v for b in out for v in b]
    assert len(set(everything)) == len(everything)
    for bucket in out:
        assert bucket == sorted(bucket)


def test_time_is_embedded() -> None:
    before = now_ms()
    value = uuid7()
    after = now_ms()
    # The counter may borrow a millisecond from the future when it overflows, never more.
    assert before <= uuid7_time_ms(value) <= after + 1
    assert uuid7_time_ms(value) == int.from_bytes(uuid.UUID(value).bytes[:6], "big")


def _isolate(monkeypatch: pytest.MonkeyPatch) -> None:
    # The generator's state is restored afterwards, so ids from a faked clock never leak into other tests.
    monkeypatch.setattr(ids, "_last_ms", ids._last_ms)
    monkeypatch.setattr(ids, "_seq", ids._seq)


def test_clock_going_backwards_keeps_order(monkeypatch: pytest.MonkeyPatch) -> None:
    _isolate(monkeypatch)
    first = uuid7()
    real = ids.time.time_ns
    monkeypatch.setattr(ids.time, "time_ns", lambda: real() - 5_000_000_000)  # NTP step back by 5 s
    later = [uuid7() for _ in range(50)]
    assert [first, *later] == sorted([first, *later])
    # The embedded time does not go backwards with the clock.
    assert uuid7_time_ms(later[-1]) >= uuid7_time_ms(first)


def test_counter_overflow_moves_to_the_next_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    _isolate(monkeypatch)
    frozen = now_ms() + 10_000  # a millisecond no earlier id used
    monkeypatch.setattr(ids.time, "time_ns", lambda: frozen * 1_000_000)
    values = [uuid7() for _ in range(5000)]  # more than the 12-bit counter holds in one millisecond
    assert values == sorted(values) and len(set(values)) == len(values)
    times = {uuid7_time_ms(v) for v in values}
    assert min(times) == frozen and max(times) >= frozen + 1


def _tail(value: str) -> str:
    return value.replace("-", "")[-15:]  # the 62 random bits (after the variant)


def test_a_forked_child_draws_its_own_random_bits() -> None:
    import os

    uuid7()  # the pool is filled: a child that kept it would hand out the parent's next bits
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, then out without running the parent's cleanup
        try:
            os.write(write, ",".join(uuid7() for _ in range(50)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        theirs = pipe.read().split(",")
    os.waitpid(pid, 0)
    mine = [uuid7() for _ in range(50)]
    assert len(theirs) == 50
    assert not {_tail(v) for v in mine} & {_tail(v) for v in theirs}


def test_random_bits_differ_from_id_to_id() -> None:
    tails = [_tail(uuid7()) for _ in range(5000)]  # more than one pool's worth
    assert len(set(tails)) == len(tails)
