"""How `--help` shows an option's value: click's names (TEXT, INTEGER, PATH), nothing for a flag.

typer 0.29 labels every option with its Python type (`<str>`, `<bool>`, `<path>`), a flag included,
which says nothing to someone typing a command. Older typers show click's names already and have no
`display_type` to replace, so there this does nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import typer.core

HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}

_NAMES = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "bool": "BOOLEAN", "path": "PATH", "Path": "PATH",
          "file": "FILE", "directory": "DIRECTORY", "datetime": "DATETIME", "uuid": "UUID"}


def plain(label: str) -> str:
    """`<str>` → TEXT, `<list[str]>` → TEXT, `<int range>` → INTEGER; unknown names upper-cased."""
    inner = label.strip().removeprefix("<").removesuffix(">")
    while (m := re.fullmatch(r"list\[(.*)\]", inner)) is not None:
        inner = m.group(1)
    inner = inner.removesuffix(" range")
    return _NAMES.get(inner, inner.upper())


def _wrap(original: Callable[[Any, Any], Any]) -> Callable[[Any, Any], str | None]:
    def display_type(self: Any, ctx: Any) -> str | None:
        if getattr(self, "is_flag", False) or getattr(self, "count", False):
            return None
        label = original(self, ctx)
        return plain(label) if isinstance(label, str) else label

    display_type.__wrapped__ = original  # type: ignore[attr-defined]
    return display_type


def install() -> None:
    base = getattr(typer.core, "_TyperParameter", None)
    current = getattr(base, "display_type", None)
    if base is not None and current is not None and not hasattr(current, "__wrapped__"):
        base.display_type = _wrap(current)
