"""The testing helpers an agent's own tests import stand below the CLI: they never import it."""

import ast
from pathlib import Path

import ledgerbus


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):  # function-level imports too
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return out


def test_testing_helpers_do_not_import_the_cli() -> None:
    root = Path(ledgerbus.__file__).parent
    for name in ("testing.py", "pytest_plugin.py"):
        imported = _imports(root / name)
        assert any(m.startswith("ledgerbus.") for m in imported), name  # the walk sees its imports
        assert sorted(m for m in imported if m == "ledgerbus.cli" or m.startswith("ledgerbus.cli.")) == [], name
