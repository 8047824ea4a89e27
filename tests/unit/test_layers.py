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


# -- one boundary to NATS: nats-py is used in ledgerbus/bus/_nats/ only --------------------------------

#: The private nats-py attributes the fast paths read; only bus/_nats/ may touch them.
_NATS_PRIVATE = {"_pre", "_stream", "_direct", "_consumer", "_prefix", "_pending_queue", "_pending_size",
                 "_pending_next_msgs_calls", "_send_publish", "_parse_header_lines", "_send_command",
                 "_flush_pending", "_flush_queue", "_nms", "_deliver", "_getters", "_wakeup_next", "_conn",
                 "_name", "_sub", "_nc", "_js", "_timeout"}


def _boundary_modules(root: Path, *, outside: str) -> list[tuple[str, ast.Module]]:
    """Every module of the package at `root` except those under `outside` (a path relative to root)."""
    return [(str(p.relative_to(root)), ast.parse(p.read_text())) for p in sorted(root.rglob("*.py"))
            if not str(p.relative_to(root)).startswith(outside)]


def _boundary_nats_imports(root: Path) -> list[str]:
    found = []
    for name, tree in _boundary_modules(root, outside="bus/_nats/"):
        for node in ast.walk(tree):
            mods = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                    else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            found += [f"{name}: {m}" for m in mods if m == "nats" or m.startswith("nats.")]
    return found


def _boundary_private_reads(root: Path) -> list[str]:
    """`x._name` for a nats-py private name on anything but `self` (a module's own fields are its own),
    and getattr(x, "_name") on anything."""
    found = []
    for name, tree in _boundary_modules(root, outside="bus/_nats/"):
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr in _NATS_PRIVATE
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                found.append(f"{name}:{node.lineno}: .{node.attr}")
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
                  and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                  and node.args[1].value in _NATS_PRIVATE):
                found.append(f"{name}:{node.lineno}: {node.func.id}(..., {node.args[1].value!r})")
    return found


def _boundary_bus_handles(root: Path) -> list[str]:
    """`.js` / `.nc` (a Bus's nats-py connection and JetStream context) outside ledgerbus/bus/."""
    return [f"{name}:{node.lineno}: .{node.attr}" for name, tree in _boundary_modules(root, outside="bus/")
            for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr in ("js", "nc")]


def test_no_module_outside_the_nats_boundary_imports_nats() -> None:
    root = Path(ledgerbus.__file__).parent
    assert any("nats" in m for m in _imports(root / "bus" / "_nats" / "client.py"))  # the walk sees nats imports
    assert _boundary_nats_imports(root) == []


def test_no_module_outside_the_nats_boundary_reads_nats_py_private_attributes() -> None:
    root = Path(ledgerbus.__file__).parent
    inside = [p for n, t in _boundary_modules(root / "bus" / "_nats", outside="\0") for p in [n]
              if any(isinstance(x, ast.Attribute) and x.attr in _NATS_PRIVATE for x in ast.walk(t))]
    assert inside  # the check sees them where they are allowed
    assert _boundary_private_reads(root) == []


def test_nothing_outside_the_bus_reaches_a_bus_js_or_nc() -> None:
    root = Path(ledgerbus.__file__).parent
    assert any(isinstance(x, ast.Attribute) and x.attr == "js"
               for x in ast.walk(ast.parse((root / "bus" / "connection.py").read_text())))
    assert _boundary_bus_handles(root) == []
