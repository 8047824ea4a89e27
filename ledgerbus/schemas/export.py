"""JSON Schema export: the language-neutral contract, written to the top-level `schemas/` folder."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import msgspec

from ledgerbus.schemas.capability import CapabilityRegistry
from ledgerbus.schemas.directory import InstanceInfo
from ledgerbus.schemas.envelope import Envelope

DIALECT = "https://json-schema.org/draft/2020-12/schema"
BASE_ID = "https://ledgerbus.dev/schemas/"
ENVELOPE_FILE = "envelope.schema.json"
DIRECTORY_FILE = "directory-entry.schema.json"
#: The capability version goes into `$comment` in this exact form. Not a keyword of its own: validators in
#: strict mode (Ajv's default) refuse a schema with a keyword they do not know.
VERSION_COMMENT = "ledgerbus capability {name} {kind}, version {version}"
_version_re = re.compile(r"^ledgerbus capability \S+ (?:input|output), version (\d+)(?:;|$)")


def _doc(name: str, schema: dict[str, Any], title: str) -> dict[str, Any]:
    return {"$schema": DIALECT, "$id": BASE_ID + name, "title": title, **schema}


def envelope_schema() -> dict[str, Any]:
    return msgspec.json.schema(Envelope)


def directory_entry_schema() -> dict[str, Any]:
    return msgspec.json.schema(InstanceInfo)


def version_of(doc: dict[str, Any]) -> int | None:
    """The capability version a generated payload schema carries (None: not a capability's schema)."""
    m = _version_re.match(str(doc.get("$comment", "")))
    return int(m.group(1)) if m else None


def build(registry: CapabilityRegistry) -> dict[str, dict[str, Any]]:
    """File name → schema document: the envelope, the directory entry, each capability's input and output."""
    docs = {
        ENVELOPE_FILE: _doc(ENVELOPE_FILE, envelope_schema(), "ledgerbus envelope"),
        DIRECTORY_FILE: _doc(DIRECTORY_FILE, directory_entry_schema(), "ledgerbus directory entry (KV LB_AGENTS)"),
    }
    for cap in registry:
        for kind, pt in (("input", cap.input), ("output", cap.output)):
            name = f"{cap.name}.{kind}.schema.json"
            schema = pt.json_schema()
            ours = VERSION_COMMENT.format(name=cap.name, kind=kind, version=cap.version)
            # A model's own root $comment (pydantic json_schema_extra) is kept, after ours.
            theirs = schema.get("$comment")
            schema["$comment"] = f"{ours}; {theirs}" if theirs else ours
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
