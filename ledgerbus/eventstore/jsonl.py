"""Portable ledgers: JSONL export and import, lossless (export → import → export is byte-identical).

One line per ledger entry, in position order:

    {"ledgerbus":"ledger","version":1}                                  header
    {"position":7,"prevHash":"…","hash":"…","envelope":{…exact bytes…}}  an envelope
    {"position":9,"rejected":{"subject":…,"code":…,"reason":…,"data":"<base64>"}}   a non-envelope
    {"position":12,"duplicate":{"id":…,"conversationId":…,"firstPosition":7,"data":"<base64>"}}  an id again

The envelope is embedded as its exact wire bytes (not re-encoded), so hashes recomputed on import
match the ones in the file — an attached ledger that was edited on the way is caught. Bytes that
contain a newline (pretty-printed JSON from some other client) or whitespace around the object go in
`envelopeText` as a string.
"""

from __future__ import annotations

import asyncio
import base64
import heapq
from collections.abc import Callable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import msgspec

from ledgerbus.errors import InvalidMessage, StoreError
from ledgerbus.eventstore.base import EventFilter, Rejected, StoredEvent
from ledgerbus.eventstore.integrity import GENESIS, chain_hash
from ledgerbus.eventstore.sqlite import SQLiteEventStore
from ledgerbus.schemas.codec import Codec
from ledgerbus.schemas.envelope import Envelope

HEADER = b'{"ledgerbus":"ledger","version":1}\n'


class _RejectedLine(msgspec.Struct):
    subject: str
    code: str
    reason: str
    data: str


class _DuplicateLine(msgspec.Struct, rename="camel"):
    id: str
    conversation_id: str
    first_position: int
    data: str


class _CompactedLine(msgspec.Struct, rename="camel"):
    conversation_id: str
    id: str
    prev_hash: str
    hash: str


class _SnapshotLine(msgspec.Struct, rename="camel"):
    conversation_id: str
    status: str
    events: int
    first_position: int
    last_position: int
    head_hash: str
    hash: str
    state: msgspec.Raw


class _Line(msgspec.Struct, rename="camel", omit_defaults=True):
    position: int = 0
    prev_hash: str | None = None
    hash: str | None = None
    envelope: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b""))
    envelope_text: str | None = None
    rejected: _RejectedLine | None = None
    duplicate: _DuplicateLine | None = None
    compacted: _CompactedLine | None = None
    snapshot: _SnapshotLine | None = None
    ledgerbus: str | None = None
    version: int | None = None


_line_decoder = msgspec.json.Decoder(_Line)


def event_line(position: int, prev: str, digest: str, raw: bytes) -> bytes:
    head = b'{"position":%d,"prevHash":"%s","hash":"%s",' % (position, prev.encode(), digest.encode())
    # Whitespace around the object (the codec accepts it) would be dropped by the `envelope` field's
    # JSON parse, and the hash with it: exact text keeps every byte.
    if b"\n" in raw or b"\r" in raw or raw[:1] != b"{" or raw[-1:] != b"}":
        return head + b'"envelopeText":' + msgspec.json.encode(raw.decode()) + b"}\n"
    return head + b'"envelope":' + raw + b"}\n"


def reject_line(r: Rejected) -> bytes:
    body = _RejectedLine(r.subject, r.code, r.reason, base64.b64encode(r.data).decode())
    return b'{"position":%d,"rejected":%s}\n' % (r.position, msgspec.json.encode(body))


class Chainer:
    """Computes chain links for events read from a source that does not store them (JetStream)."""

    def __init__(self) -> None:
        self.heads: dict[str, str] = {}

    def link(self, conversation_id: str, raw: bytes) -> tuple[str, str]:
        prev = self.heads.get(conversation_id, GENESIS)
        digest = chain_hash(prev, raw)
        self.heads[conversation_id] = digest
        return prev, digest


def export_store(store: SQLiteEventStore, out: IO[bytes], *, conversation_ids: tuple[str, ...] = (),
                 progress: Callable[[int, int], None] | None = None) -> int:
    """Write the store (or some conversations) as JSONL. Returns the number of lines after the header.

    Compacted conversations go along as what is left of them: their chain links (in position order,
    among the events) and their snapshots (at the end), so an imported copy still verifies.

    A ledger from before hash chains, opened read-only (so not migrated), is chained as it is written,
    as opening it writable would: the export is the one the migrated ledger gives, and its hashes check
    on import.
    """
    out.write(HEADER)
    cids = conversation_ids

    def events() -> Iterator[tuple[int, bytes]]:
        chain = Chainer()  # unchained: whole conversations are exported, so each chain starts at its first event
        for pos, cid, prev, digest, raw in store.event_rows(cids):
            if prev is None or digest is None:
                prev, digest = chain.link(cid, raw)
            yield pos, event_line(pos, prev, digest, raw)

    def links() -> Iterator[tuple[int, bytes]]:
        for pos, cid, eid, prev, digest in store.compacted_links(cids):
            body = msgspec.json.encode(_CompactedLine(cid, eid, prev, digest))
            yield pos, b'{"position":%d,"compacted":%s}\n' % (pos, body)

    rejects = ((r.position, reject_line(r)) for r in (() if cids else store.rejects()))

    def duplicates() -> Iterator[tuple[int, bytes]]:
        for pos, eid, cid, first, data in store.duplicate_rows(cids):
            body = msgspec.json.encode(_DuplicateLine(eid, cid, first, base64.b64encode(data).decode()))
            yield pos, b'{"position":%d,"duplicate":%s}\n' % (pos, body)
    total = store.count_matching(EventFilter(conversation_ids=cids)) if progress else 0
    n = 0
    for _pos, line in heapq.merge(events(), links(), rejects, duplicates(), key=lambda item: item[0]):
        out.write(line)
        n += 1
        if progress is not None and n % 5000 == 0:
            progress(n, max(total, n))
    for cid, status, count, first, last, head_hash, digest, raw in store.snapshot_rows(cids):
        body = msgspec.json.encode(_SnapshotLine(cid, status, count, first, last, head_hash, digest, msgspec.Raw(raw)))
        out.write(b'{"snapshot":%s}\n' % body)
        n += 1
    return n


async def export_stream(source: AsyncIterator[list[StoredEvent]], out: IO[bytes]) -> int:
    """Write events read from JetStream as JSONL, chaining them as the recorder would."""
    out.write(HEADER)
    chain = Chainer()
    n = 0
    async for chunk in source:
        for ev in chunk:
            prev, digest = chain.link(ev.envelope.conversation_id, ev.raw)
            out.write(event_line(ev.position, prev, digest, ev.raw))
            n += 1
    return n


@dataclass
class ImportReport:
    events: int = 0
    new: int = 0
    rejects: int = 0
    compacted: int = 0  # chain links of compacted events (their envelopes are gone)
    snapshots: int = 0
    duplicates: int = 0  # stream messages that repeated an envelope id, kept at their positions
    hash_mismatches: list[int] = field(default_factory=list)  # positions whose bytes do not match the file's hash


@dataclass
class Entry:
    line_no: int
    position: int
    raw: bytes | None
    hash: str | None
    rejected: Rejected | None
    prev_hash: str | None = None
    compacted: _CompactedLine | None = None
    snapshot: _SnapshotLine | None = None
    duplicate: _DuplicateLine | None = None


def parse(lines: Iterable[bytes]) -> Iterator[Entry]:
    """Entries of a JSONL ledger; a malformed line is a StoreError naming the line and the reason."""
    saw_header = False
    for no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = _line_decoder.decode(line)
        except msgspec.DecodeError as exc:
            raise StoreError(f"line {no}: not a ledger line: {exc}") from None
        if item.ledgerbus is not None:
            if item.ledgerbus != "ledger" or (item.version or 0) > 1:
                raise StoreError(f"line {no}: unsupported ledger format {item.ledgerbus!r} v{item.version}")
            saw_header = True
            continue
        if not saw_header:
            raise StoreError(f"line {no}: missing the ledgerbus header line (is this a ledger export?)")
        if item.snapshot is not None:
            yield Entry(no, item.snapshot.last_position, None, None, None, snapshot=item.snapshot)
            continue
        if item.position < 1:
            raise StoreError(f"line {no}: position must be ≥ 1")
        if item.rejected is not None:
            r = item.rejected
            try:
                data = base64.b64decode(r.data, validate=True)
            except ValueError:
                raise StoreError(f"line {no}: rejected.data is not base64") from None
            yield Entry(no, item.position, None, None, Rejected(item.position, r.subject, data, r.code, r.reason))
            continue
        if item.duplicate is not None:
            yield Entry(no, item.position, None, None, None, duplicate=item.duplicate)
            continue
        if item.compacted is not None:
            yield Entry(no, item.position, None, item.compacted.hash, None, item.compacted.prev_hash,
                        compacted=item.compacted)
            continue
        raw = bytes(item.envelope) if len(item.envelope) else (
            item.envelope_text.encode() if item.envelope_text is not None else None)
        if raw is None:
            raise StoreError(f"line {no}: neither an envelope nor a rejected message")
        yield Entry(no, item.position, raw, item.hash, None, item.prev_hash)


_codec = Codec()


def decode_entry(entry: Entry) -> Envelope:
    """The line's envelope, held to the same limits and rules as one arriving on the bus."""
    try:
        return _codec.decode(entry.raw or b"")
    except InvalidMessage as exc:
        raise StoreError(f"line {entry.line_no} (position {entry.position}): {exc.code}: {exc.reason}") from None


def import_into_store(store: SQLiteEventStore, lines: Iterable[bytes], *, batch: int = 5000,
                      progress: Callable[[int, int], None] | None = None, total: int = 0) -> ImportReport:
    """Append a JSONL ledger to a SQLite store at its recorded positions; hashes are recomputed and compared."""
    report = ImportReport()
    events: list[StoredEvent] = []
    rejects: list[Rejected] = []

    def flush() -> None:
        report.new += store.append(events, rejects=rejects)
        events.clear()
        rejects.clear()

    for entry in parse(lines):
        if entry.duplicate is not None:
            d = entry.duplicate
            try:
                data = base64.b64decode(d.data, validate=True)
            except ValueError:
                raise StoreError(f"line {entry.line_no}: duplicate.data is not base64") from None
            flush()  # its first copy comes before it
            store.restore_duplicate(entry.position, d.id, d.conversation_id, d.first_position, data)
            report.duplicates += 1
            continue
        if entry.compacted is not None or entry.snapshot is not None:
            flush()  # a compacted link extends its chain: everything before it must be in first
            if entry.compacted is not None:
                c = entry.compacted
                store.restore_link(entry.position, c.conversation_id, c.id, c.prev_hash, c.hash)
                report.compacted += 1
            else:
                sn = entry.snapshot
                assert sn is not None
                store.restore_snapshot(sn.conversation_id, sn.status, sn.events, sn.first_position,
                                 sn.last_position, sn.head_hash, bytes(sn.state), sn.hash)
                report.snapshots += 1
            continue
        if entry.rejected is not None:
            rejects.append(entry.rejected)
            report.rejects += 1
        else:
            events.append(StoredEvent(entry.position, decode_entry(entry), entry.raw or b""))
            if entry.hash is not None and chain_hash(entry.prev_hash or "", entry.raw or b"") != entry.hash:
                report.hash_mismatches.append(entry.position)
            report.events += 1
        if len(events) + len(rejects) >= batch:
            flush()
            if progress is not None:
                progress(report.events + report.rejects, max(total, report.events + report.rejects))
    flush()
    return report


async def import_into_stream(bus: Any, lines: Iterable[bytes], *, window: int = 256) -> ImportReport:
    """Publish a JSONL ledger's envelopes into the LEDGER stream, in order (new positions are the stream's).

    Envelope ids stay the Nats-Msg-Id, so importing the same file twice within the duplicate window
    stores nothing twice. Rejected entries are counted, not published: they were never envelopes.
    """
    from ledgerbus.bus.connection import envelope_headers

    report = ImportReport()
    pending: list[Any] = []
    for entry in parse(lines):
        if entry.rejected is not None or entry.duplicate is not None:
            report.rejects += entry.rejected is not None
            report.duplicates += entry.duplicate is not None
            continue  # a duplicate's first copy is published; the stream's own window keeps the rest out
        if entry.compacted is not None or entry.snapshot is not None:
            report.compacted += entry.compacted is not None
            report.snapshots += entry.snapshot is not None
            continue  # a stream holds envelopes only; compacted history stays in SQLite
        env = decode_entry(entry)
        fut = await bus.publish_raw_async(bus.subjects.of(env), entry.raw, headers=envelope_headers(env))
        pending.append(fut)
        report.events += 1
        if len(pending) >= window:
            report.new += await _stored(pending)
            pending.clear()
    report.new += await _stored(pending)
    return report


async def _stored(futures: list[Any]) -> int:
    acks = await asyncio.gather(*futures)
    return sum(0 if ack.duplicate else 1 for ack in acks)


def read_lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        yield from fh
