"""A file that is not a ledger gets a one-line error from every command that reads one, and is left
exactly as it was: no traceback, and never the ledger's tables written into someone else's database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from clihelp import one_line_error
from typer.testing import CliRunner

from ledgerbus.cli.main import app
from ledgerbus.errors import StoreError
from ledgerbus.eventstore.sqlite import SQLiteEventStore

COMMANDS = [("replay",), ("verify",), ("export",), ("compact",), ("conversations", "--ledger"),
            ("stalls", "--ledger"), ("trace", "show")]


def foreign(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES (1)")
    conn.close()
    return path


@pytest.mark.parametrize("kind", ["text", "sqlite"])
@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_commands_refuse_a_file_that_is_not_a_ledger(tmp_path: Path, kind: str, command: tuple[str, ...]) -> None:
    if kind == "text":
        path = tmp_path / "notes.txt"
        path.write_text("not a database\n" * 10)
    else:
        path = foreign(tmp_path)
    before = path.read_bytes()
    result = CliRunner().invoke(app, [*command, str(path)])
    assert result.exit_code == 2, result.output
    assert "not a ledger" in one_line_error(result)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no -wal, no -shm left beside it


def test_the_store_opens_ledgers_and_empty_files_only(tmp_path: Path) -> None:
    path = foreign(tmp_path)
    for readonly in (True, False):
        with pytest.raises(StoreError, match="not a ledger \\(tables: t\\)"):
            SQLiteEventStore(path, readonly=readonly)
    empty = tmp_path / "new.db"
    empty.touch()
    with pytest.raises(StoreError, match="no ledger yet"):
        SQLiteEventStore(empty, readonly=True)
    store = SQLiteEventStore(empty)  # writable: an empty file becomes a ledger
    store.close()
    assert SQLiteEventStore(empty, readonly=True).count() == 0


@pytest.mark.parametrize("command", COMMANDS + [("diff",), ("fork",)], ids=" ".join)
def test_a_directory_given_as_a_ledger_is_one_line(tmp_path: Path, command: tuple[str, ...]) -> None:
    folder = tmp_path / "ledgers"
    folder.mkdir()
    extra = ["some-conversation", "--at", "1"] + (["--at", "2"] if command == ("diff",) else [])
    args = [*command, str(folder), *(extra if command in (("diff",), ("fork",)) else [])]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "is a directory, not a ledger file" in one_line_error(result)
    assert list(folder.iterdir()) == []
