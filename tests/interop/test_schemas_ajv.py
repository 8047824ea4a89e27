"""Every file in schemas/ compiles in Ajv (the most used JavaScript validator) in its default strict mode.

Strict mode refuses a schema with a keyword it does not know; `x-ledgerbus-version` used to make every
capability schema fail there. The check runs examples/node-agent/check-schemas.mjs with node.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from nodeagent import EXAMPLE, SCHEMAS, example_ready


def check(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([example_ready(), "check-schemas.mjs", str(directory)], cwd=EXAMPLE,
                          capture_output=True, text=True, timeout=60)


def test_every_schema_file_compiles_in_ajv_strict_mode() -> None:
    run = check(SCHEMAS)
    assert run.returncode == 0, run.stderr
    count = len(list(SCHEMAS.glob("*.schema.json")))
    assert run.stdout.strip() == f"{count} schemas compile in Ajv strict mode"


def test_the_check_refuses_an_unknown_keyword(tmp_path: Path) -> None:
    doc = json.loads((SCHEMAS / "research.search.input.schema.json").read_text())
    (tmp_path / "research.search.input.schema.json").write_text(json.dumps({**doc, "x-ledgerbus-version": 1}))
    (tmp_path / "envelope.schema.json").write_text((SCHEMAS / "envelope.schema.json").read_text())
    run = check(tmp_path)
    assert run.returncode == 1
    assert run.stderr.strip() == ('research.search.input.schema.json: strict mode: unknown keyword: '
                                  '"x-ledgerbus-version"')
