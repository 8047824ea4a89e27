"""No function in ledgerbus/orchestrator/ above cyclomatic complexity 15 (issue 20), measured with radon."""

from __future__ import annotations

from pathlib import Path

from radon.complexity import cc_visit
from radon.visitors import Class

import ledgerbus.orchestrator

LIMIT = 15
PACKAGE = Path(ledgerbus.orchestrator.__file__).parent


def blocks_above(source: str, limit: int) -> list[str]:
    """Every function and method in `source` whose complexity is above `limit`, as `name (line): n`."""
    # cc_visit lists methods on their own as well as in their class, whose score sums theirs: judge
    # functions and methods, not classes.
    return [f"{b.fullname} (line {b.lineno}): {b.complexity}" for b in cc_visit(source)
            if not isinstance(b, Class) and b.complexity > limit]


def test_the_measure_finds_a_function_above_the_limit() -> None:
    branches = "".join(f"    if x == {i}:\n        return {i}\n" for i in range(LIMIT))
    source = f"def flat(x):\n{branches}    return -1\n\nclass C:\n    def m(self, x):\n{branches.replace('    ', '        ')}        return -1\n"
    assert blocks_above(source, LIMIT) == ["flat (line 1): 16", f"C.m (line {LIMIT * 2 + 5}): 16"]
    assert blocks_above(source, LIMIT + 1) == []


def test_no_orchestrator_function_is_above_the_limit() -> None:
    modules = sorted(PACKAGE.glob("*.py"))
    assert len(modules) > 10  # the walk sees the package
    found = [f"{path.name}: {b}" for path in modules for b in blocks_above(path.read_text(), LIMIT)]
    assert found == [], f"above cyclomatic complexity {LIMIT}:\n" + "\n".join(found)
