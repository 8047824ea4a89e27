"""Today's orchestrator takes the golden ledger's decisions (resimulate through the CLI), and compaction keeps it readable."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from ledgerbus.cli import ledger_cmds, replay as replay_mod
from ledgerbus.eventstore.jsonl import import_into_store, read_lines
from ledgerbus.eventstore.sqlite import SQLiteEventStore

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
app = typer.Typer()
app.command()(replay_mod.replay)
app.command()(ledger_cmds.compact)
app.command()(ledger_cmds.verify)
runner = CliRunner()


def golden_copy(tmp_path: Path) -> tuple[Path, dict]:
    path = tmp_path / "golden.db"
    store = SQLiteEventStore(path)
    import_into_store(store, read_lines(FIXTURES / "golden_ledger.jsonl"))
    store.close()
    return path, json.loads((FIXTURES / "golden_state.json").read_text())


def test_resimulating_the_golden_ledger_finds_no_divergence(tmp_path):
    path, expected = golden_copy(tmp_path)
    for cid, state in expected.items():
        res = runner.invoke(app, ["replay", str(path), "-c", cid, "--mode", "resimulate", "--json"])
        assert res.exit_code == 0, res.output
        out = json.loads(res.output)
        assert out["same"] and out["divergences"] == [], (state["capability"], out)
        assert out["requests"] == sum(t["attempts"] for k, t in state["tasks"].items() if k != state["root_task_id"])


def test_compacted_golden_ledger_verifies_and_replays_from_snapshots(tmp_path):
    path, expected = golden_copy(tmp_path)
    res = runner.invoke(app, ["compact", str(path), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["conversations"] == len(expected)
    assert runner.invoke(app, ["verify", str(path)]).exit_code == 0
    for cid, state in expected.items():
        res = runner.invoke(app, ["replay", str(path), "-c", cid, "--json", "--no-timeline"])
        assert res.exit_code == 0, res.output
        assert json.loads(res.output)[0]["state"]["status"] == state["status"]


def test_a_compacted_ledger_exports_and_imports_losslessly(tmp_path):
    import io

    from ledgerbus.eventstore.compact import compact
    from ledgerbus.eventstore.jsonl import export_store, import_into_store

    path, expected = golden_copy(tmp_path)
    store = SQLiteEventStore(path)
    cid = next(iter(expected))
    compact(store, conversation_ids=(cid,))
    first = io.BytesIO()
    export_store(store, first)
    store.close()
    assert b'"compacted":' in first.getvalue() and b'"snapshot":' in first.getvalue()
    copy = SQLiteEventStore(tmp_path / "copy.db")
    report = import_into_store(copy, io.BytesIO(first.getvalue()))
    assert report.compacted == expected[cid]["events"] and report.snapshots == 1
    assert copy.verify().ok
    again = io.BytesIO()
    export_store(copy, again)
    copy.close()
    assert again.getvalue() == first.getvalue()
    res = runner.invoke(app, ["replay", str(tmp_path / "copy.db"), "-c", cid, "--json", "--no-timeline"])
    assert res.exit_code == 0 and json.loads(res.output)[0]["state"]["status"] == expected[cid]["status"]
