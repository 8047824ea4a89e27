"""The rough edges of issue 18, point 7: each test here failed on the code before its fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest
from clihelp import one_line_error

from ledgerbus.eventstore.sqlite import SQLiteEventStore
from ledgerbus.ids import now_ms, uuid7
from ledgerbus.schemas.codes import Action
from ledgerbus.schemas.envelope import Envelope, ErrorInfo, answer, new_request

LEDGERBUS = Path(sys.executable).with_name("ledgerbus")


def conversation(cid: str | None = None, *, late: int = 0, done: bool = True) -> list[Envelope]:
    """A one-step conversation (REQUEST, ACK, RESPONSE), and `late` answers arriving after its end."""
    req = new_request(sender="cli", recipient="research", capability="research.search", payload={"topic": "x"},
                      conversation_id=cid)
    events = [req, answer(req, Action.ACK, payload={"instance": "r-1"})]
    if done:
        events.append(answer(req, Action.RESPONSE, payload={"topic": "x", "notes": []}))
    events += [answer(req, Action.PROGRESS, payload={"stage": "late"}) for _ in range(late)]
    return events


def rejection() -> Envelope:
    """What an agent records for bytes that were not an envelope: an ERROR, no REQUEST before it."""
    eid = uuid7()
    return Envelope(id=eid, conversation_id="unknown", task_id=eid, causation_id=None, sender="research",
                    recipient="unknown", action=Action.ERROR, capability="unknown", timestamp=now_ms(),
                    error=ErrorInfo(code="INVALID_MESSAGE", message="not JSON", details={}))


def disk_bytes(path: Path) -> int:
    """A ledger on disk: its file and its WAL."""
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())


def ledger_file(path: Path, *envelopes: Envelope) -> Path:
    store = SQLiteEventStore(path)
    store.append_envelopes(list(envelopes))
    store.close()
    return path


# -- request --deadline ---------------------------------------------------------------------------


def test_request_gives_up_at_its_deadline_and_says_so(cli, background):
    # A type whose consumer exists but no instance is up: the request waits in its queue, unanswered.
    background.call(background.bus.agent_consumer("sleepy"))
    start = time.monotonic()
    r = cli("request", "sleepy", "sleepy.nap", "{}", "--no-validate", "--deadline", "1", "--timeout", "20")
    elapsed = time.monotonic() - start
    assert r.exit_code == 1, r.output
    last = r.stderr.strip().splitlines()[-1]  # after the note that no instance is live
    assert "Traceback" not in r.output and last.startswith("error: gave up at the deadline"), r.output
    assert elapsed < 8, f"waited {elapsed:.1f}s for a 1s deadline"


# -- replay --summary -----------------------------------------------------------------------------


def test_replay_summary_counts_a_conversation_once_and_no_rejection_as_running(cli, tmp_path):
    path = ledger_file(tmp_path / "l.db", *conversation(late=3), *conversation(), rejection())
    out = cli("replay", str(path), "--summary", "--json", server=False)
    assert out.exit_code == 0, out.output
    states = [c["state"]["status"] for c in json.loads(out.stdout)]
    assert states == ["DONE", "DONE"]
    lines = cli("replay", str(path), "--summary", "--jsonl", server=False)
    assert [json.loads(x)["state"]["status"] for x in lines.stdout.splitlines()] == ["DONE", "DONE"]
    human = cli("replay", str(path), "--summary", server=False).stdout
    assert "2 conversations: 2 DONE" in human and "RUNNING" not in human
    assert "without a REQUEST" in human and "after their conversation ended" in human


# -- compact --------------------------------------------------------------------------------------


def test_compact_reports_the_bytes_it_really_freed(cli, tmp_path):
    envs = [e for _ in range(300) for e in conversation()]
    path = ledger_file(tmp_path / "l.db", *envs)
    before = disk_bytes(path)
    r = cli("compact", str(path), "--json", server=False)
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    after = disk_bytes(path)
    assert report["conversations"] == 300
    assert report["bytesBefore"] == before and report["bytesAfter"] == after
    assert report["bytesFreed"] == before - after > 0


# -- trace export ---------------------------------------------------------------------------------


def test_trace_export_links_to_jaeger_only_when_jaeger_answers(cli, tmp_path, unused_port):
    from tests.integration.otlp_receiver import OtlpReceiver

    envs = conversation()
    path = ledger_file(tmp_path / "l.db", *envs)
    with OtlpReceiver() as receiver:
        for ui in (f"http://127.0.0.1:{unused_port}", receiver.endpoint):  # nothing there; a collector, not Jaeger
            r = cli("trace", "export", str(path), "--endpoint", receiver.endpoint, "--ui", ui, server=False)
            assert r.exit_code == 0, r.output
            assert "exported" in r.stdout and "/trace/" not in r.stdout
            doc = json.loads(cli("trace", "export", str(path), "--endpoint", receiver.endpoint, "--ui", ui,
                                 "--json", server=False).stdout)
            assert doc[0]["url"] is None and doc[0]["traceId"]


# -- conversation ids: what is shown can be typed back ---------------------------------------------


def test_tail_shows_id_prefixes_that_work_as_c(cli, background, tmp_path):
    # Begun in one millisecond (one process's counter): they share their first 13 characters.
    ids = [uuid7() for _ in range(3)]
    background.publish(*(e for cid in ids for e in conversation(cid)))
    shown = cli("tail", "--all", "--idle", "0.5")
    assert shown.exit_code == 0, shown.output
    prefixes = {line.split()[1] for line in shown.stdout.splitlines()}
    assert len(prefixes) == 3 and all(len(p) < 36 for p in prefixes)
    for p in prefixes:
        cid = next(c for c in ids if c.startswith(p))
        events = [json.loads(x) for x in cli("tail", "--all", "--idle", "0.5", "-c", p, "--jsonl").stdout.splitlines()]
        assert {e["conversationId"] for e in events} == {cid} and len(events) == 3
        traced = json.loads(cli("trace", "show", "-c", p, "--json").stdout)
        assert [t["conversationId"] for t in traced] == [cid]
    # The same prefixes name the conversations in a recorded file.
    path = ledger_file(tmp_path / "l.db", *(e for cid in ids for e in conversation(cid)))
    for p in prefixes:
        got = json.loads(cli("replay", str(path), "-c", p, "--json", server=False).stdout)
        assert [c["conversationId"] for c in got] == [c for c in ids if c.startswith(p)]
    # A prefix several ids share is one line naming them, from the file and from the stream.
    common = os.path.commonprefix(ids)
    assert len(common) >= 6
    for r in (cli("replay", str(path), "-c", common, server=False), cli("tail", "--all", "-c", common),
              cli("export", str(path), "-c", common, server=False), cli("diff", str(path), common, "--at", "1",
                                                                        "--at", "2", server=False)):
        assert r.exit_code == 1, r.output
        err = one_line_error(r)
        assert "ambiguous" in err and all(c in err for c in ids)


# -- one output switch, machine values ------------------------------------------------------------


def _both(cli, *args, server=True):
    doc = cli(*args, "--json", server=server)
    lines = cli(*args, "--jsonl", server=server)
    assert doc.exit_code == lines.exit_code, (doc.output, lines.output)
    return json.loads(doc.stdout), [json.loads(x) for x in lines.stdout.splitlines()]


def test_every_listing_command_takes_json_and_jsonl(cli, examples, tmp_path):
    path = ledger_file(tmp_path / "l.db", *conversation(), *conversation(done=False))
    examples.publish(*conversation())
    same = [("conversations", "--ledger", str(path)), ("replay", str(path)), ("replay", str(path), "--summary"),
            ("trace", "show", str(path)), ("stalls", "--ledger", str(path), "--receipt", "3600"),
            ("deadletters", "list"), ("agents",)]
    for args in same:
        doc, lines = _both(cli, *args)
        assert isinstance(doc, list) and lines == doc, args
    doc, lines = _both(cli, "verify", str(path), server=False)
    assert doc["ok"] is True and lines == [doc]
    doc, lines = _both(cli, "schemas", "show", "research.search", server=False)
    assert {x["file"] for x in lines} == set(doc) and all(x["schema"] == doc[x["file"]] for x in lines)
    doc, lines = _both(cli, "status")
    assert len(lines) == 1 and lines[0]["stream"] == doc["stream"]
    doc, lines = _both(cli, "tail", "--all", "--idle", "0.5")
    assert [e["id"] for e in doc] == [e["id"] for e in lines] and len(doc) >= 3
    both = cli("conversations", "--ledger", str(path), "--json", "--jsonl", server=False)
    assert both.exit_code == 1 and "choose one" in one_line_error(both)


# -- tables at 80 columns -------------------------------------------------------------------------


@pytest.mark.parametrize("command", [("conversations", "--ledger"), ("stalls", "--ledger"), ("replay", "--summary")],
                         ids=" ".join)
def test_tables_fit_80_columns_and_show_ids_whole(tmp_path, command):
    unfinished = [conversation(done=False) for _ in range(3)]
    for conv in unfinished:  # long since acknowledged and silent: stalled, and not DONE
        for i, e in enumerate(conv):
            conv[i] = msgspec.structs.replace(e, timestamp=now_ms() - 3_600_000)
    path = ledger_file(tmp_path / "l.db", *(e for c in unfinished for e in c))
    args = [command[0], *command[1:]] if command[0] != "replay" else ["replay", str(path), "--summary"]
    if command[0] != "replay":
        args.append(str(path))
    env = {**os.environ, "COLUMNS": "80", "LEDGERBUS_NATS_URL": "", "LEDGERBUS_PREFIX": ""}
    out = subprocess.run([str(LEDGERBUS), *args], capture_output=True, text=True, timeout=60, env=env)
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stdout.splitlines()
    assert lines and max(len(x) for x in lines) <= 80, out.stdout
    for conv in unfinished:
        assert conv[0].conversation_id in out.stdout, out.stdout  # whole, on one line
