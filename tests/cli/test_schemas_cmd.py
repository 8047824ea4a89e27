"""`ledgerbus schemas show`: a capability's schemas, the envelope's, and the directory entry's."""

import json
from pathlib import Path

from typer.testing import CliRunner

from clihelp import one_line_error
from ledgerbus.cli.main import app

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
runner = CliRunner()


def test_show_prints_the_directory_entry_schema_as_checked_in() -> None:
    result = runner.invoke(app, ["schemas", "show", "directory-entry"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == json.loads((SCHEMAS / "directory-entry.schema.json").read_text())


def test_show_an_unknown_name_lists_only_capabilities() -> None:
    result = runner.invoke(app, ["schemas", "show", "nope"])
    assert result.exit_code == 1
    err = one_line_error(result)
    # Other tests in the same process may have registered capabilities of their own: not an exact list.
    assert err.startswith("error: unknown capability 'nope'; known: ")
    known = err.split("known: ", 1)[1].split(", ")
    assert {"content.article", "research.search"} <= set(known)
    assert "directory-entry" not in known and "envelope" not in known
