"""The SQLite store owns its connection and its lock: every transaction on the file is one of its methods,
so no module can hold the lock around SQL of its own or interleave statements with the store's."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "ledgerbus"
# The store's private lock, or its connection (sqlite-utils' Database and the sqlite3 connection under it).
REACHING_IN = re.compile(r"\b\w*store\w*\s*\.\s*(_lock|db|_db|conn|_conn)\b")
OWNERS = {"eventstore/sqlite.py"}


def test_no_module_reaches_into_the_store() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in OWNERS:
            continue
        for no, line in enumerate(path.read_text().splitlines(), 1):
            if REACHING_IN.search(line):
                found.append(f"{rel}:{no}: {line.strip()}")
    assert found == [], "\n".join(found)
