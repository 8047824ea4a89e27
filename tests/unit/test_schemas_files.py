"""The checked-in `schemas/` folder is the language-neutral contract: it must equal what the code generates."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec

from ledgerbus.examples import register
from ledgerbus.schemas import export
from ledgerbus.schemas.capability import CapabilityRegistry

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def builtin_registry() -> CapabilityRegistry:
    """Only the built-in capabilities: other tests in this process register their own in the global registry."""
    reg = CapabilityRegistry()
    register(reg)
    return reg


registry = builtin_registry()


def test_checked_in_schemas_match_the_code() -> None:
    problems = export.check(registry, SCHEMAS)
    assert problems == [], "run `ledgerbus schemas export`:\n" + "\n".join(problems)


def test_every_builtin_capability_has_both_files() -> None:
    names = {p.name for p in SCHEMAS.glob("*.schema.json")}
    assert {"envelope.schema.json", "directory-entry.schema.json"} <= names
    caps = [c.name for c in registry]
    assert {"research.search", "writing.draft", "editor.edit", "content.article"} <= set(caps)
    for cap in caps:
        assert f"{cap}.input.schema.json" in names
        assert f"{cap}.output.schema.json" in names


def test_files_are_valid_2020_12_schemas() -> None:
    from jsonschema import Draft202012Validator

    for path in sorted(SCHEMAS.glob("*.schema.json")):
        doc = json.loads(path.read_text())
        assert doc["$schema"] == export.DIALECT, path
        assert doc["$id"] == export.BASE_ID + path.name, path
        Draft202012Validator.check_schema(doc)


class _In(msgspec.Struct):
    text: str


def test_check_reports_a_stale_a_missing_and_an_orphan_file(tmp_path: Path) -> None:
    reg = CapabilityRegistry()
    reg.register("echo.say", _In, _In)
    written = export.write(reg, tmp_path)
    assert sorted(p.name for p in written) == [
        "directory-entry.schema.json", "echo.say.input.schema.json", "echo.say.output.schema.json",
        "envelope.schema.json"]
    assert export.check(reg, tmp_path) == []

    stale = tmp_path / "echo.say.input.schema.json"
    stale.write_text(stale.read_text().replace('"text"', '"txt"'))
    (tmp_path / "echo.say.output.schema.json").unlink()
    (tmp_path / "gone.input.schema.json").write_text("{}")
    problems = export.check(reg, tmp_path)
    assert len(problems) == 3
    assert any("echo.say.input.schema.json" in p and "differs" in p for p in problems)
    assert any("echo.say.output.schema.json" in p and "missing" in p for p in problems)
    assert any("gone.input.schema.json" in p and "no capability" in p for p in problems)


def test_export_is_deterministic(tmp_path: Path) -> None:
    first = {n: export.render(d) for n, d in export.build(registry).items()}
    second = {n: export.render(d) for n, d in export.build(registry).items()}
    assert first == second


def test_envelope_schema_is_camel_case_and_closed() -> None:
    doc = json.loads((SCHEMAS / "envelope.schema.json").read_text())
    env = doc["$defs"]["Envelope"]
    assert env["additionalProperties"] is False
    assert {"conversationId", "taskId", "causationId", "replyTo", "idempotencyKey", "schemaVersion"} <= set(env["properties"])
    assert not any("_" in p for p in env["properties"])
