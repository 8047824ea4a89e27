"""Issue 21: `ledgerbus ui` on a file it cannot open is one line and exit 2, and the package imports no web stack."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _ledgerbus(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERBUS_")}
    return subprocess.run([sys.executable, "-m", "ledgerbus.cli.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=30)


def test_missing_ledger_is_one_line_exit_2(tmp_path: Path) -> None:
    res = _ledgerbus("ui", str(tmp_path / "nope.db"), cwd=tmp_path)
    assert res.returncode == 2, res
    assert res.stderr.strip().startswith("error: no ledger at") and "Traceback" not in res.stderr


def test_a_file_that_is_not_a_ledger_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("hello, not sqlite\n" * 100)
    res = _ledgerbus("ui", str(bad), cwd=tmp_path)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res


def test_the_cli_does_not_import_the_web_stack_until_ui_runs(tmp_path: Path) -> None:
    code = "import sys, ledgerbus.cli.main; print(sorted(m for m in ('starlette', 'uvicorn', 'ledgerbus.ui') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out
