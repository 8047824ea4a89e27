"""`ledgerbus schemas`: export, check and show the JSON Schemas of the envelope and capabilities."""

from __future__ import annotations

from pathlib import Path

import typer

from ledgerbus.cli.common import console, fail
from ledgerbus.cli.output import JsonlOption, JsonOption, choose, emit

app = typer.Typer(help="JSON Schemas of the envelope and every capability (the language-neutral contract).",
                  no_args_is_help=True)


def _registry():  # type: ignore[no-untyped-def]
    from ledgerbus.examples import register
    from ledgerbus.schemas.capability import registry

    register()  # the built-in capabilities

    return registry


@app.command()
def export(out: Path = typer.Option(Path("schemas"), "--out", "-o", help="folder to write into")) -> None:
    """Write envelope.schema.json, directory-entry.schema.json and <capability>.{input,output}.schema.json.

    Example: ledgerbus schemas export --out schemas
    """
    from ledgerbus.schemas import export as ex

    for path in ex.write(_registry(), out):
        console.print(f"wrote {path}")


@app.command()
def check(directory: Path = typer.Option(Path("schemas"), "--dir", "-d", help="folder holding the schemas")) -> None:
    """Exit 1 if the files differ from what the code generates.

    Example: ledgerbus schemas check
    """
    from ledgerbus.schemas import export as ex

    problems = ex.check(_registry(), directory)
    for p in problems:
        console.print(p)
    if problems:
        raise typer.Exit(1)
    console.print(f"{directory}: in sync")


@app.command()
def show(
    capability: str = typer.Argument(..., help="capability name, 'envelope' or 'directory-entry'"),
    as_json: bool = JsonOption,
    as_jsonl: bool = JsonlOption,
) -> None:
    """Print the input and output schema of a capability, the envelope's or the directory entry's (indented;
    --json compact, --jsonl one file a line).

    Example: ledgerbus schemas show research.search
    """
    from ledgerbus.schemas import export as ex

    fmt = choose(as_json, as_jsonl)
    docs = ex.build(_registry())
    whole = {"envelope": ex.ENVELOPE_FILE, "directory-entry": ex.DIRECTORY_FILE}
    if capability in whole:
        found = {whole[capability]: docs[whole[capability]]}
    else:
        found = {k: v for k, v in docs.items()
                 if k.startswith(capability + ".") and k.count(".") == capability.count(".") + 3}
    if not found:
        names = sorted({k.rsplit(".", 3)[0] for k in docs if k not in whole.values()})
        fail(f"unknown capability {capability!r}; known: {', '.join(names)}")
    doc = found[whole[capability]] if capability in whole else found
    if fmt.machine:
        emit(fmt, doc, lines=[{"file": k, "schema": v} for k, v in found.items()])
    else:
        console.print_json(data=doc)
