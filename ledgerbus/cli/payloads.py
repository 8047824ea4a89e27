"""Payload input (`json`, `@file`, `-`) and checking it against the capability before anything is sent.

The schema comes from where the truth is: the live directory (what running instances accept), else the
capabilities this process knows (the built-in examples). Every refusal names the field and the rule.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledgerbus.errors import ConfigError, InvalidMessage, NotFound, UnknownAgent as UnknownAgent  # re-exported


def read_payload(arg: str) -> dict[str, Any]:
    """`'{"a": 1}'`, `@path/to/file.json` or `-` (stdin) → a JSON object, or InvalidMessage saying why not."""
    where = "payload"
    if arg == "-":
        text, where = sys.stdin.read(), "stdin"
    elif arg.startswith("@"):
        path = Path(arg[1:])
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read payload file {path}: {exc.strerror or exc}") from None
        where = str(path)
    else:
        text = arg
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidMessage(f"{where} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                             path="$.payload") from None
    if not isinstance(value, dict):
        raise InvalidMessage(f"{where} must be a JSON object, got {type(value).__name__}", path="$.payload")
    return value


@dataclass
class Target:
    agent: str
    capability: str
    schema: dict[str, Any] | None  # JSON Schema of the input, when one is known
    source: str  # "directory", "local" or "none"
    live_instances: int


def check_json_schema(payload: dict[str, Any], schema: dict[str, Any]) -> None:
    """InvalidMessage naming the field and the rule of the first violation (by the most specific path)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(payload), key=lambda e: (-len(e.absolute_path), e.json_path))
    if not errors:
        return
    err = errors[0]
    path = "$.payload" + err.json_path[1:]
    field = err.json_path[2:] or "payload"
    if err.validator == "required":
        missing = err.message.split("'")[1] if "'" in err.message else ""
        field = f"{field}.{missing}" if field != "payload" else missing
        path = f"{path}.{missing}"
    raise InvalidMessage(f"payload field `{field}` fails rule `{err.validator}`: {err.message} - at `{path}`",
                         path=path, details={"rule": err.validator})


def check_local(payload: dict[str, Any], capability: str) -> bool:
    """Validate against a capability this process has registered; False when it does not know it."""
    from ledgerbus.examples import register
    from ledgerbus.schemas.capability import registry

    register()  # the built-in capabilities

    cap = registry.find(capability)
    if cap is None:
        return False
    cap.validate_input(payload)  # InvalidMessage naming the path and the rule (msgspec's wording)
    return True


async def resolve(bus: Any, agent: str, capability: str) -> Target:
    """Who serves `agent` and what `capability` accepts there; UnknownAgent / UnknownCapability otherwise."""
    from ledgerbus.bus.directory import Directory
    from ledgerbus.bus.streams import consumer_name

    live = await Directory(bus).live_types()
    instances = live.get(agent, [])
    if instances:
        caps = {c.name: c for inst in instances for c in inst.capabilities}
        if capability not in caps:
            raise InvalidMessage(f"agent {agent!r} has no capability {capability!r}; it offers "
                                 f"{', '.join(sorted(caps)) or 'nothing'}", code="UNKNOWN_CAPABILITY",
                                 path="$.capability")
        return Target(agent, capability, caps[capability].input_schema or None, "directory", len(instances))
    try:
        await bus.consumer_info(consumer_name(agent))
    except NotFound:
        known = ", ".join(sorted(live)) or "none"
        raise UnknownAgent(f"unknown agent {agent!r}: no live instance and no consumer for it "
                           f"(live agents: {known})") from None
    # Its consumer exists, so requests queue until an instance comes back; validate with what we know locally.
    return Target(agent, capability, None, "none", 0)


def validate(payload: dict[str, Any], target: Target) -> None:
    if target.schema is not None:
        check_json_schema(payload, target.schema)
    elif check_local(payload, target.capability):
        target.source = "local"
