"""The hash chain: every kind of tampering is reported with its position, an untouched ledger is clean."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ledgerbus.eventstore import sqlite as sqlite_module
from ledgerbus.eventstore.base import StoredEvent
from ledgerbus.eventstore.integrity import IssueKind, chain_hash
from ledgerbus.eventstore.sqlite import SQLiteEventStore
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import Envelope, answer, new_request


def conversation(n_tasks: int = 3) -> list[Envelope]:
    root = new_request(sender="client", recipient="orchestrator", capability="demo.run", payload={"n": n_tasks})
    out = [root, answer(root, Action.ACK)]
    for i in range(n_tasks):
        req = new_request(sender="orchestrator", recipient="worker", capability="work.do", payload={"i": i},
                          conversation_id=root.conversation_id, task_id=f"{root.conversation_id}_s{i}")
        out += [req, answer(req, Action.ACK), answer(req, Action.RESPONSE, payload={"out": i})]
    out.append(answer(root, Action.RESPONSE, payload={"done": True}))
    return out


@pytest.fixture
def filled(tmp_path: Path) -> tuple[Path, list[int], str]:
    path = tmp_path / "l.db"
    store = SQLiteEventStore(path)
    a, b = conversation(), conversation()
    # Interleave two conversations, as a real ledger does.
    mixed = [e for pair in zip(a, b) for e in pair]
    store.append_envelopes(mixed)
    positions = [ev.position for ev in store.read() if ev.envelope.conversation_id == a[0].conversation_id]
    assert store.verify().ok
    store.close()
    return path, positions, a[0].conversation_id


def tamper(path: Path, *sql: tuple[str, tuple[object, ...]]) -> None:
    conn = sqlite3.connect(path)
    with conn:
        for stmt, args in sql:
            conn.execute(stmt, args)
    conn.close()


def issues(path: Path) -> list[tuple[IssueKind, int | None]]:
    store = SQLiteEventStore(path)
    try:
        return [(i.kind, i.position) for i in store.verify().issues]
    finally:
        store.close()


def test_clean_ledger_verifies(filled):
    path, positions, _ = filled
    store = SQLiteEventStore(path)
    report = store.verify()
    assert report.ok and report.events == 2 * len(positions) and report.conversations == 2
    store.close()


def test_one_byte_changed_is_altered_at_its_position(filled):
    path, positions, _ = filled
    p = positions[2]
    conn = sqlite3.connect(path)
    raw = bytearray(conn.execute("SELECT envelope FROM events WHERE position = ?", (p,)).fetchone()[0])
    conn.close()
    i = raw.index(b'"i":') + 4
    raw[i] = ord("7") if raw[i] != ord("7") else ord("8")
    tamper(path, ("UPDATE events SET envelope = ? WHERE position = ?", (bytes(raw), p)))
    assert issues(path) == [(IssueKind.ALTERED, p)]


def test_deleted_event_is_missing_before_the_next(filled):
    path, positions, _ = filled
    tamper(path, ("DELETE FROM events WHERE position = ?", (positions[3],)))
    assert issues(path) == [(IssueKind.MISSING, positions[4])]


def test_deleted_last_event_is_missing_at_the_end(filled):
    path, positions, _ = filled
    tamper(path, ("DELETE FROM events WHERE position = ?", (positions[-1],)))
    assert issues(path) == [(IssueKind.MISSING, positions[-1])]


def test_two_events_swapped_are_reordered(filled):
    path, positions, _ = filled
    p, q = positions[2], positions[5]
    tamper(path,
           ("UPDATE events SET position = -1 WHERE position = ?", (p,)),
           ("UPDATE events SET position = ? WHERE position = ?", (p, q)),
           ("UPDATE events SET position = ? WHERE position = -1", (q,)))
    found = issues(path)
    assert sorted(found) == sorted([(IssueKind.REORDERED, p), (IssueKind.REORDERED, q)])


@pytest.mark.parametrize("forge", ["no-hash", "copied-link", "random-link"])
def test_inserted_event_is_reported(filled, forge):
    path, positions, cid = filled
    conn = sqlite3.connect(path)
    cols = [r[1] for r in conn.execute("PRAGMA table_info(events)")]
    row = dict(zip(cols, conn.execute("SELECT * FROM events WHERE position = ?", (positions[3],)).fetchone()))
    conn.close()
    # A copy of a real event, with a new id, squeezed in between two events of the conversation.
    # Spread positions apart (order unchanged) to make room between two events of the conversation.
    tamper(path, ("UPDATE events SET position = -position * 10", ()), ("UPDATE events SET position = -position", ()),
           ("UPDATE chain_heads SET last_position = last_position * 10", ()))
    row["position"] *= 10
    new_pos = row["position"] + 5
    row.update(position=new_pos, id="forged-" + row["id"][:20],
               envelope=row["envelope"].replace(row["id"].encode(), ("forged-" + row["id"][:20]).encode()))
    if forge == "no-hash":
        row.update(hash=None, prev_hash=None)
    else:
        # A careful forger links the event in and gives it a self-consistent hash.
        prev = row["hash"] if forge == "copied-link" else "ab" * 32
        row.update(prev_hash=prev, hash=chain_hash(prev, row["envelope"]))
    marks = ",".join("?" * len(cols))
    tamper(path, (f"INSERT INTO events ({','.join(cols)}) VALUES ({marks})", tuple(row[c] for c in cols)))
    found = issues(path)
    expected_kind = IssueKind.UNCHAINED if forge == "no-hash" else IssueKind.INSERTED
    assert found == [(expected_kind, new_pos)]


def test_old_ledger_without_chain_is_migrated(tmp_path):
    path = tmp_path / "old.db"
    store = SQLiteEventStore(path)
    store.append_envelopes(conversation(2))
    store.close()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("DROP VIEW envelopes")  # as old as that, a ledger had no view either
        conn.execute("ALTER TABLE events DROP COLUMN hash")
        conn.execute("ALTER TABLE events DROP COLUMN prev_hash")
        conn.execute("DELETE FROM chain_heads")
    conn.close()
    store = SQLiteEventStore(path)
    assert store.verify().ok and store.count() == 9
    store.close()


def test_duplicates_and_redeliveries_do_not_break_the_chain(tmp_path):
    from ledgerbus.eventstore.base import StoredEvent

    store = SQLiteEventStore(tmp_path / "d.db")
    envs = conversation(1)
    evs = [StoredEvent(i + 1, e) for i, e in enumerate(envs)]
    assert store.append(evs[:3]) == 3
    # A redelivered batch overlapping the last one, and the same envelope again at a later position.
    assert store.append(evs[2:] + [StoredEvent(99, envs[0])]) == len(envs) - 3
    assert store.count() == len(envs) and store.verify().ok
    store.close()


def test_an_event_repeated_within_a_batch_past_the_end_is_stored_once(tmp_path):
    from ledgerbus.eventstore.base import StoredEvent

    # Past the ledger's end, nothing is looked up first: the repeats must still be caught. The same event
    # twice, the same envelope at a second position, and another envelope at a position already taken.
    store = SQLiteEventStore(tmp_path / "d.db")
    envs, other = conversation(1), conversation(1)[0]
    evs = [StoredEvent(i + 1, e) for i, e in enumerate(envs)]
    batch = [*evs[:3], evs[2], StoredEvent(50, envs[0]), *evs[3:], StoredEvent(2, other)]
    assert store.append(batch) == len(envs)
    assert [(ev.position, ev.envelope.id) for ev in store.read()] == [(ev.position, ev.envelope.id) for ev in evs]
    assert store.holds([other.id]) == set() and store.verify().ok
    store.close()


def test_an_envelope_stored_before_arriving_past_the_end_is_skipped(tmp_path):
    from ledgerbus.eventstore.base import StoredEvent

    # A duplicate past JetStream's window: an envelope already stored comes again at a new position beyond
    # the ledger's end, in one batch with new envelopes. The new ones are stored and the chain stays whole.
    store = SQLiteEventStore(tmp_path / "d.db")
    envs = conversation(2)
    assert store.append([StoredEvent(i + 1, e) for i, e in enumerate(envs[:3])]) == 3
    later = [StoredEvent(10 + i, e) for i, e in enumerate([envs[1], *envs[3:]])]
    assert store.append(later) == len(envs) - 3
    assert [ev.envelope.id for ev in store.read()] == [e.id for e in envs]
    assert store.verify().ok
    store.close()


def test_verify_beside_a_live_writer_reports_nothing(tmp_path, monkeypatch):
    path = tmp_path / "l.db"
    writer = SQLiteEventStore(path)  # the recorder
    a, b = conversation(1), conversation(1)
    writer.append_envelopes(a + b)
    reader = SQLiteEventStore(path)  # `ledgerbus verify`, on its own connection
    real_verify_stream = sqlite_module.verify_stream

    def verify_while_the_writer_appends(chains):
        chains = iter(chains)
        first = next(chains)  # heads read, the first conversation's rows read
        later = a if first[0] == b[0].conversation_id else b
        extra = answer(later[2], Action.PROGRESS, payload={})
        assert writer.append([StoredEvent(writer._stored_end() + 1, extra)]) == 1
        return real_verify_stream([first, *chains])

    monkeypatch.setattr(sqlite_module, "verify_stream", verify_while_the_writer_appends)
    report = reader.verify()
    monkeypatch.undo()
    assert report.ok, report.issues
    assert reader.verify().ok  # and the append, seen whole afterwards, is a clean link too
    assert not reader.db.conn.in_transaction
    writer.close()
    reader.close()


def test_cut_off_end_with_the_surviving_hash_copied_into_the_head_is_missing(filled):
    # No stream checkpoint here (appended directly): the head's own count is what gives it away.
    path, positions, cid = filled
    conn = sqlite3.connect(path)
    (surviving,) = conn.execute("SELECT hash FROM events WHERE position = ?", (positions[-3],)).fetchone()
    conn.close()
    tamper(path, ("DELETE FROM events WHERE position IN (?, ?)", (positions[-2], positions[-1])),
           ("UPDATE chain_heads SET hash = ?, last_position = ? WHERE conversation_id = ?", (surviving, positions[-3], cid)))
    assert issues(path) == [(IssueKind.MISSING, positions[-3])]
