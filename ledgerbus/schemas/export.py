"""JSON Schema export: the language-neutral contract, written to the top-level `schemas/` folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from ledgerbus.schemas.capability import CapabilityRegistry
from ledgerbus.schemas.envelope import Envelope

DIALECT = "https://json-schema.org/draft/2020-12/schema"
BASE_ID = "https://ledgerbus.dev/schemas/"


def _doc(name: str, schema: dict[str, Any], title: str) -> dict[str, Any]:
    return {"$schema": DIALECT, "$id": BASE_ID + name, "title": title, **schema}


def envelope_schema() -> dict[str, Any]:
    return msgspec.json.schema(Envelope)


def build(registry: CapabilityRegistry) -> dict[str, dict[str, Any]]:
    """File name → schema document, for the envelope and each capability's input and output."""
    docs = {"envelope.schema.json": _doc("envelope.schema.json", envelope_schema(), "ledgerbus envelope")}
    for cap in registry:
        for kind, pt in (("input", cap.input), ("output", cap.output)):
            name = f"{cap.name}.{kind}.schema.json"
            schema = pt.json_schema()
            schema.setdefault("x-ledgerbus-version", cap.version)
            docs[name] = _doc(name, schema, f"{cap.name} {kind} (v{cap.version})")
    return docs


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def write(registry: CapabilityRegistry, directory: str | Path) -> list[Path]:
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, doc in build(registry).items():
        path = out / name
        path.write_text(render(doc))
        written.append(path)
    return written


def check(registry: CapabilityRegistry, directory: str | Path) -> list[str]:
    """What differs between the files in `directory` and what the code generates (empty: in sync)."""
    out = Path(directory)
    problems = []
    expected = build(registry)
    for name, doc in expected.items():
        path = out / name
        if not path.exists():
            problems.append(f"{path}: missing")
        elif path.read_text() != render(doc):
            problems.append(f"{path}: differs from the code (run `ledgerbus schemas export`)")
    for path in sorted(out.glob("*.schema.json")):
        if path.name not in expected:
            problems.append(f"{path}: no capability generates it")
    return problems
