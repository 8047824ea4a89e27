"""The conventions every command follows (issue 18, point 7): --version, -h, help without Python type
labels, and one output switch on every listing command."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from test_docs import commands
from typer.testing import CliRunner

from ledgerbus.cli.main import app

LEDGERBUS = Path(sys.executable).with_name("ledgerbus")
TYPE_LABEL = re.compile(r"<(?:bool|str|int|float|path|file|directory|datetime|uuid|list\[[^\]]*\]|\w+ range)>")
runner = CliRunner()


def test_version_prints_the_package_version():
    out = subprocess.run([str(LEDGERBUS), "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"ledgerbus {metadata.version('ledgerbus')}"


@pytest.mark.parametrize("name", [n for n, _ in commands()] + [""], ids=lambda n: n or "ledgerbus")
def test_help_has_a_short_option_and_no_type_labels(name):
    args = name.split()
    long = runner.invoke(app, [*args, "--help"], terminal_width=100)
    short = runner.invoke(app, [*args, "-h"], terminal_width=100)
    assert long.exit_code == 0 and short.exit_code == 0, short.output
    assert short.output == long.output
    assert "Usage:" in long.output
    assert not TYPE_LABEL.findall(long.output), long.output


def test_sub_apps_take_h_too():
    for group in ("trace", "schemas", "deadletters", "agent", "orchestrator", "security"):
        result = runner.invoke(app, [group, "-h"])
        assert result.exit_code == 0 and "Commands" in result.output, (group, result.output)
