"""Integrity: a hash chain over each conversation's events, and the check that finds any tampering.

Each event stores `hash = sha256(prev_hash ‖ envelope bytes)`, where `prev_hash` is the hash of the
previous event of the same conversation (GENESIS for the first). The position is deliberately not
hashed: a ledger imported into a fresh JetStream stream gets new positions but keeps its chain.
A `chain_heads` row per conversation (last hash, event count) closes the chain, so deleting the
last events of a conversation is detected too. This is tamper-evident, not tamper-proof: someone who
rewrites every hash after an edit (and the head) is not caught — sign the heads for that.

Everything here is pure: the store feeds rows in, the verifier hands issues back.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Sequence

import msgspec

GENESIS = "0" * 64


def chain_hash(prev: str, raw: bytes) -> str:
    """The hash of an event whose predecessor in its conversation has hash `prev`."""
    return hashlib.sha256(prev.encode("ascii") + raw).hexdigest()


class IssueKind(str, enum.Enum):
    ALTERED = "ALTERED"  # the event's bytes no longer match its recorded hash
    MISSING = "MISSING"  # one or more events of the chain are gone
    REORDERED = "REORDERED"  # events are present but not in their recorded order
    INSERTED = "INSERTED"  # an event that was never part of the chain
    UNCHAINED = "UNCHAINED"  # an event with no hash at all (written around the store)
    SNAPSHOT = "SNAPSHOT"  # a compacted conversation's snapshot does not match its chain
    COLUMN = "COLUMN"  # a column stored beside the envelope (sender, action…) disagrees with the envelope
    DAMAGED = "DAMAGED"  # the stored envelope does not decode under the codec's rules


class Issue(msgspec.Struct, frozen=True):
    kind: IssueKind
    conversation_id: str
    position: int | None  # the event the problem was seen at (None: the conversation as a whole)
    message: str


class ChainRow(msgspec.Struct, frozen=True):
    """One event as the verifier sees it. `raw` is None for compacted events (only their hashes remain)."""

    position: int
    hash: str | None
    prev_hash: str | None
    raw: bytes | None = None


class Head(msgspec.Struct, frozen=True):
    hash: str
    count: int
    last_position: int


class VerifyReport(msgspec.Struct):
    events: int = 0
    conversations: int = 0
    issues: list[Issue] = msgspec.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.issues


def verify_conversation(conversation_id: str, rows: Sequence[ChainRow], head: Head | None) -> list[Issue]:
    """Check one conversation's rows (in position order) against their chain and head.

    The links tell the recorded order: an event nobody links to (and that is not the chain's end)
    was inserted; an event linking to a hash that is not there follows a deletion; the events the
    longest run in recorded order leaves out are the ones moved.
    """
    issues: list[Issue] = []

    def report(kind: IssueKind, i: int, message: str) -> None:
        issues.append(Issue(kind, conversation_id, rows[i].position, message))

    if head is None and rows:
        issues.append(Issue(IssueKind.UNCHAINED, conversation_id, rows[0].position,
                            "conversation has no chain head: its events were written around the store"))
    index_of = {r.hash: i for i, r in enumerate(rows) if r.hash}
    linked = {r.prev_hash for r in rows if r.prev_hash}
    end = head.hash if head is not None else (rows[-1].hash if rows else None)
    chained: list[int] = []
    for i, row in enumerate(rows):
        if row.hash is None:
            report(IssueKind.UNCHAINED, i, "event has no chain hash: it was written around the store")
            continue
        if row.raw is not None and chain_hash(row.prev_hash or "", row.raw) != row.hash:
            report(IssueKind.ALTERED, i, "event bytes do not match their recorded hash (content was changed)")
        if row.hash not in linked and row.hash != end and _chain_continues_past(rows, i, index_of, end):
            report(IssueKind.INSERTED, i, "event is not part of the chain: no later event links to it")
            continue
        chained.append(i)

    succ = {rows[i].prev_hash: i for i in chained}
    starts = [i for i in chained if rows[i].prev_hash == GENESIS or rows[i].prev_hash not in index_of]
    for i in starts:
        if rows[i].prev_hash != GENESIS:
            after = f"after position {rows[i - 1].position}" if i else "at the start of the conversation"
            report(IssueKind.MISSING, i, f"the event(s) recorded {after} and before this one are missing "
                                         "(deleted, or altered and re-hashed)")
    rank: dict[int, int] = {}
    for s in starts + chained:  # then any rows only reachable through a cycle, in place
        cur: int | None = s
        while cur is not None and cur not in rank:
            rank[cur] = len(rank)
            cur = succ.get(rows[cur].hash)
    for i in _out_of_order([rank[i] for i in chained], chained):
        report(IssueKind.REORDERED, i, "event is not at its recorded place in the conversation's order")

    if head is not None:
        if not rows:
            issues.append(Issue(IssueKind.MISSING, conversation_id, head.last_position,
                                f"all {head.count} events of the conversation are missing"))
        elif head.hash not in index_of:
            issues.append(Issue(IssueKind.MISSING, conversation_id, head.last_position,
                                f"the conversation's last event(s) are missing (recorded: {head.count} events "
                                f"ending at position {head.last_position}; found {len(rows)})"))
        elif not issues and (len(rows) != head.count or rows[-1].position != head.last_position):
            # The chain checks out to a hash the head names: the head itself was rewritten to fit (the last
            # events cut off and the surviving hash copied in), or rows were added around the store.
            kind = IssueKind.MISSING if len(rows) < head.count else IssueKind.INSERTED
            issues.append(Issue(kind, conversation_id, max(head.last_position, rows[-1].position),
                                f"the chain head records {head.count} events ending at position "
                                f"{head.last_position}; {len(rows)} are here, ending at position "
                                f"{rows[-1].position} (the head was rewritten to fit)"))
    issues.sort(key=lambda x: (x.position is None, x.position or 0))
    return issues


def _chain_continues_past(rows: Sequence[ChainRow], i: int, index_of: dict[str, int], end: str | None) -> bool:
    """An unlinked event is an insertion when the chain goes on without it; else the chain broke after it."""
    if i + 1 < len(rows):
        return rows[i + 1].prev_hash in index_of or rows[i + 1].prev_hash == GENESIS
    return end in index_of


def _out_of_order(ranks: list[int], ids: list[int]) -> list[int]:
    """The ids not in a longest increasing run of `ranks` (patience sorting, O(n log n))."""
    import bisect

    tails: list[int] = []  # smallest tail rank of an increasing run of each length
    tails_at: list[int] = []
    parent = [-1] * len(ranks)
    for k, r in enumerate(ranks):
        j = bisect.bisect_left(tails, r)
        if j == len(tails):
            tails.append(r)
            tails_at.append(k)
        else:
            tails[j] = r
            tails_at[j] = k
        parent[k] = tails_at[j - 1] if j else -1
    keep: set[int] = set()
    k = tails_at[-1] if tails_at else -1
    while k != -1:
        keep.add(k)
        k = parent[k]
    return [ids[k] for k in range(len(ranks)) if k not in keep]


def snapshot_hash(head_hash: str, state_json: bytes) -> str:
    """Binds a compacted conversation's snapshot to the last hash of its chain."""
    return chain_hash(head_hash, state_json)


def verify_stream(groups: Iterable[tuple[str, Sequence[ChainRow], Head | None]]) -> VerifyReport:
    report = VerifyReport()
    for cid, rows, head in groups:
        report.conversations += 1
        report.events += len(rows)
        report.issues.extend(verify_conversation(cid, rows, head))
    return report
