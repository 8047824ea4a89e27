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
# The layers of ledgerbus, lowest first (ARCHITECTURE.md draws them). A module may import modules of
# its own layer and of the layers below, never of one above; packages in one layer must not import
# each other in a cycle. "(root)" is `ledgerbus/__init__.py`, the public facade: it names everything,
# so nothing inside the package imports it.
_LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"errors", "ids", "aio", "_version"}),
    frozenset({"schemas"}),
    frozenset({"bus"}),
    frozenset({"security", "tracing"}),  # plugged into the bus: they may import it, it imports neither
    frozenset({"eventstore"}),
    frozenset({"agents"}),
    frozenset({"orchestrator"}),
    frozenset({"examples"}),
    frozenset({"testing", "pytest_plugin"}),
    frozenset({"cli", "ui"}),
    frozenset({"(root)"}),
)

# Edges allowed to run up the layers while other work lands (test_layer_allowances_are_still_needed says
# when one is no longer needed). The bus is given signing and tracing as objects (bus/plugins.py).
_PENDING: frozenset[tuple[str, str]] = frozenset()

_Edges = dict[tuple[str, str], list[str]]


def _layer_of(package: str) -> int:
    for level, names in enumerate(_LAYERS):
        if package in names:
            return level
    raise AssertionError(f"ledgerbus.{package} has no layer: add it to _LAYERS and ARCHITECTURE.md")


def _layer_package_edges(root: Path) -> _Edges:
    """(importing package, imported package) → where, for every import under `root` (a `ledgerbus` folder),
    module-level, function-level and TYPE_CHECKING alike."""
    def package_of(parts: list[str]) -> str:  # parts of a dotted name below `ledgerbus`
        if not parts:
            return "(root)"
        return parts[0]

    edges: _Edges = {}
    for path in sorted(root.rglob("*.py")):
        rel = list(path.relative_to(root).with_suffix("").parts)
        is_init = rel[-1] == "__init__"
        here = rel[:-1] if is_init else rel  # this module's dotted name below `ledgerbus`
        source = package_of(here)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[list[str]] = []
            if isinstance(node, ast.Import):
                targets = [a.name.split(".") for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: resolve against this module's package
                    base = ["ledgerbus", *(here if is_init else here[:-1])]
                    base = base[: len(base) - (node.level - 1)]
                    module = base + (node.module.split(".") if node.module else [])
                else:
                    module = (node.module or "").split(".")
                if module == ["ledgerbus"]:  # `from ledgerbus import x`: a module, or a name of the facade
                    for alias in node.names:
                        sub = alias.name
                        is_module = (root / sub).is_dir() or (root / f"{sub}.py").is_file()
                        targets.append(["ledgerbus", sub] if is_module else ["ledgerbus"])
                else:
                    targets = [module]
            for target in targets:
                if target[0] != "ledgerbus":
                    continue
                dest = package_of(target[1:])
                if dest != source:
                    edges.setdefault((source, dest), []).append(
                        f"{path.relative_to(root.parent)}:{node.lineno} imports {'.'.join(target)}")
    return edges


def _layer_violations(edges: _Edges, pending: frozenset[tuple[str, str]] = _PENDING) -> list[str]:
    return [f"{src} (layer {_layer_of(src)}) imports {dst} (layer {_layer_of(dst)}): {where}"
            for (src, dst), wheres in sorted(edges.items())
            if (src, dst) not in pending and _layer_of(dst) > _layer_of(src)
            for where in wheres]


def _layer_cycles(edges: _Edges, pending: frozenset[tuple[str, str]] = _PENDING) -> list[list[str]]:
    """Groups of packages that import each other, directly or round a loop (Tarjan's strongly connected components)."""
    graph: dict[str, set[str]] = {}
    for src, dst in edges:
        if (src, dst) not in pending:
            graph.setdefault(src, set()).add(dst)
            graph.setdefault(dst, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group: list[str] = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def _ledgerbus_root() -> Path:
    return Path(ledgerbus.__file__).parent


def test_layer_every_package_and_module_has_a_layer() -> None:
    root = _ledgerbus_root()
    names = {p.name for p in root.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    names |= {p.stem for p in root.glob("*.py") if p.stem != "__init__"}
    for name in sorted(names):
        _layer_of(name)


def test_layer_no_import_runs_up_the_layers() -> None:
    edges = _layer_package_edges(_ledgerbus_root())
    assert ("cli", "bus") in edges and ("orchestrator", "eventstore") in edges  # the walk sees the imports
    problems = _layer_violations(edges)
    assert problems == [], "imports that run up the layers (see ARCHITECTURE.md):\n" + "\n".join(problems)


def test_layer_no_cycle_between_subpackages() -> None:
    edges = _layer_package_edges(_ledgerbus_root())
    cycles = _layer_cycles(edges)
    inside = [f"{src} -> {dst}: {wheres[0]}" for group in cycles for (src, dst), wheres in sorted(edges.items())
              if src in group and dst in group and (src, dst) not in _PENDING]
    assert cycles == [], f"packages that import each other: {cycles}, through\n" + "\n".join(inside)


def test_layer_allowances_are_still_needed() -> None:
    edges = _layer_package_edges(_ledgerbus_root())
    stale = sorted(e for e in _PENDING if e not in edges)
    assert stale == [], f"{stale} no longer happen: remove them from _PENDING"


def test_layer_check_sees_function_level_relative_and_facade_imports(tmp_path: Path) -> None:
    root = tmp_path / "ledgerbus"
    for pkg in ("bus", "cli", "schemas", "eventstore"):
        (root / pkg).mkdir(parents=True)
        (root / pkg / "__init__.py").write_text("")
    (root / "__init__.py").write_text("__version__ = '0'\n")
    (root / "errors.py").write_text("")
    (root / "bus" / "late.py").write_text("def f() -> None:\n    from ledgerbus.cli import main\n")
    (root / "schemas" / "rel.py").write_text("from ..eventstore import fold\nfrom . import codec\n")
    (root / "eventstore" / "ver.py").write_text("from ledgerbus import __version__, errors\n")
    (root / "eventstore" / "back.py").write_text("import ledgerbus.schemas.rel\n")
    edges = _layer_package_edges(root)
    assert set(edges) == {("bus", "cli"), ("schemas", "eventstore"), ("eventstore", "(root)"),
                          ("eventstore", "errors"), ("eventstore", "schemas")}
    assert edges[("bus", "cli")] == ["ledgerbus/bus/late.py:2 imports ledgerbus.cli"]
    assert len(_layer_violations(edges, frozenset())) == 3  # bus→cli, schemas→eventstore, eventstore→(root)
    assert _layer_cycles(edges, frozenset()) == [["eventstore", "schemas"]]


def test_layer_architecture_md_draws_these_layers() -> None:
    text = (_ledgerbus_root().parent / "ARCHITECTURE.md").read_text()
    picture = text.split("```\n")[1]
    known = set().union(*_LAYERS)
    rows = []
    for line in picture.splitlines():  # a row: the layer's names, then what they hold
        words = line.split()
        names = words[: next((i for i, w in enumerate(words) if w not in known), len(words))]
        if names:
            rows.append(frozenset(names))
    drawn = rows[::-1]  # the picture is drawn top layer first
    assert drawn == [layer for layer in _LAYERS if layer != frozenset({"(root)"})]
