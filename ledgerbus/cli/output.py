"""One output switch for every listing command: a table (default), `--json` (one document) or `--jsonl`
(one object a line, for `jq -c`, `grep` and streams). JSON carries machine values: numbers and nulls,
never the strings a table shows ("forever", "—")."""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

JsonOption = typer.Option(False, "--json", help="one JSON document on stdout")
JsonlOption = typer.Option(False, "--jsonl", help="one JSON object a line on stdout")


class Format(enum.Enum):
    TABLE = "table"
    JSON = "json"
    JSONL = "jsonl"

    @property
    def machine(self) -> bool:
        return self is not Format.TABLE


def choose(as_json: bool, as_jsonl: bool) -> Format:
    if as_json and as_jsonl:
        from ledgerbus.cli.common import fail

        fail("--json and --jsonl: choose one")
    return Format.JSON if as_json else Format.JSONL if as_jsonl else Format.TABLE


def dumps(data: Any) -> str:
    return json.dumps(data, default=str, ensure_ascii=False)


def line(data: Any) -> None:
    """One JSON object on its own line, flushed (a live stream's reader sees it at once)."""
    sys.stdout.write(dumps(data) + "\n")
    sys.stdout.flush()


def emit(fmt: Format, doc: Any, lines: Iterable[Any] | None = None) -> None:
    """`doc` as one JSON document, or as JSON lines: `lines` if given, else each item of a list `doc`,
    else `doc` itself on one line."""
    if fmt is Format.JSON:
        line(doc)
    elif fmt is Format.JSONL:
        for item in lines if lines is not None else doc if isinstance(doc, list) else [doc]:
            line(item)
    else:  # pragma: no cover - callers draw their own tables
        raise ValueError("emit() is for JSON output; draw the table instead")


@dataclass(frozen=True)
class Column:
    name: str
    right: bool = False
    is_id: bool = False  # shown whole: never wrapped, and folded rather than cut if nothing else helps


def table(console: Console, columns: Sequence[Column], rows: Sequence[Sequence[str]], *, title: str | None = None,
          drop: Sequence[str] = ()) -> Table:
    """A table that fits the console: text columns wrap, then the `drop` columns go (in that order) until
    it fits; id columns are never cut, so what is shown can be pasted back as `-c ID`."""
    keep = list(columns)
    for name in [None, *drop]:
        if name is not None:
            keep = [c for c in keep if c.name != name]
        kept = [[r[columns.index(c)] for c in keep] for r in rows]
        if _narrowest(keep, kept) <= console.width:
            break
    return _build(keep, kept, title)


def _narrowest(columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> int:
    """The width the table needs with every column wrapped at its words (ids whole): a cell wrapped
    narrower than its longest word is no longer readable."""
    width = 1  # the left border
    for i, c in enumerate(columns):
        cells = [Text.from_markup(r[i]).plain for r in rows]
        words = [w for cell in [c.name, *cells] for w in ([cell] if c.is_id else cell.split())]
        width += max((len(w) for w in words), default=1) + 3  # padding and the border after it
    return width


def _build(columns: Sequence[Column], rows: Sequence[Sequence[str]], title: str | None) -> Table:
    t = Table(title=title, header_style="bold")
    for c in columns:
        if c.is_id:
            width = max([len(Text.from_markup(r[columns.index(c)]).plain) for r in rows] + [len(c.name)])
            t.add_column(c.name, no_wrap=True, overflow="fold", min_width=width)
        else:
            t.add_column(c.name, justify="right" if c.right else "left", overflow="fold")
    for r in rows:
        t.add_row(*r)
    return t
