"""One error tree: every public exception lives in ledgerbus.errors, and its docstring draws all of them."""

import importlib
import inspect
import pkgutil
import re

import ledgerbus
import ledgerbus.errors as errors


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(ledgerbus.__path__, "ledgerbus."))


def _defined_exceptions() -> list[tuple[str, type[BaseException]]]:
    found = []
    for name in _modules():
        module = importlib.import_module(name)
        for obj in vars(module).values():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == name:
                found.append((name, obj))
    return found


def _public_errors() -> set[type[BaseException]]:
    return {obj for name, obj in vars(errors).items()
            if inspect.isclass(obj) and issubclass(obj, BaseException) and not name.startswith("_")}


def test_the_walk_sees_the_package() -> None:
    # A walk that imported nothing would make the tests below pass vacuously.
    assert "ledgerbus.cli.main" in _modules() and "ledgerbus.agents.runtime" in _modules()
    assert {errors.LedgerbusError, errors.TaskTimeout} <= {cls for _, cls in _defined_exceptions()}


def test_every_public_exception_is_defined_in_errors() -> None:
    strays = [f"{module}.{cls.__name__}" for module, cls in _defined_exceptions()
              if module != "ledgerbus.errors" and not cls.__name__.startswith("_")]
    assert strays == [], f"define these in ledgerbus/errors.py (re-export them where they were): {strays}"


def test_every_public_exception_is_a_ledgerbus_error() -> None:
    assert [cls.__name__ for cls in _public_errors() if not issubclass(cls, errors.LedgerbusError)] == []


def test_every_timeout_is_a_timeout_error() -> None:
    timeouts = [cls for _, cls in _defined_exceptions() if "Timeout" in cls.__name__]
    assert timeouts, "no timeout class found: the walk is broken"
    assert [cls.__name__ for cls in timeouts if not issubclass(cls, TimeoutError)] == []


def test_the_docstring_tree_names_every_public_error_once() -> None:
    doc = errors.__doc__ or ""
    tree = [line for line in doc.splitlines() if re.match(r"^\s+(LedgerbusError$|[│ ]*[├└]── )", line)]
    drawn = [re.sub(r"^[\s│├└─]*", "", line).split()[0] for line in tree]
    public = _public_errors()
    names = {cls.__name__ for cls in public}
    assert sorted(drawn) == sorted(names), "the tree in ledgerbus/errors.py's docstring is out of date"
    # Each drawn class sits under its real base: the line's depth matches its place in the hierarchy.
    for line, name in zip(tree, drawn):
        cls = getattr(errors, name)
        depth = (len(line) - len(line.lstrip(" │├└─")) - 4) // 4  # 4 spaces of indent, then 4 per level
        lineage = [b for b in cls.__mro__ if b in public]
        assert depth == len(lineage) - 1, f"{name} is drawn at depth {depth}, its bases are {lineage}"


def test_public_errors_are_exported_from_the_package() -> None:
    public = _public_errors()
    missing = sorted(n for n, obj in vars(errors).items()
                     if inspect.isclass(obj) and obj in public and n not in ledgerbus.__all__)
    assert missing == []
    assert all(getattr(ledgerbus, n) is getattr(errors, n) for n in vars(errors) if n in ledgerbus.__all__)


def test_an_agent_error_is_one_class_on_both_sides() -> None:
    from ledgerbus.agents.sdk import AgentError
    from ledgerbus.errors import RemoteError

    raised = AgentError("NOPE", "no", retryable=True, details={"k": 1})
    received = RemoteError("NOPE", "no", retryable=True, details={"k": 1}, sender="echo")
    assert type(raised) is type(received)
    assert (received.code, received.message, received.retryable, received.details, received.sender) == (
        "NOPE", "no", True, {"k": 1}, "echo")
    assert raised.sender is None and str(raised) == "NOPE: no"
