"""Capabilities: what an agent can be asked, with typed input and output payloads.

A payload type may be a msgspec Struct or a pydantic model; both validate the same way from the
outside (dict in, typed object out; typed object in, JSON-ready dict out) and both export a JSON Schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable

import msgspec

from ledgerbus.errors import InvalidMessage, UnknownCapability
from ledgerbus.schemas.codec import error_path
from ledgerbus.schemas.codes import ErrorCode

try:  # pydantic is a dependency, but keep the hot path free of it when no model uses it
    import pydantic
except ImportError:  # pragma: no cover
    pydantic = None  # type: ignore[assignment]

#: Upcaster: turns a payload written at `version` into the next version's shape.
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


def _is_pydantic(tp: Any) -> bool:
    return pydantic is not None and isinstance(tp, type) and issubclass(tp, pydantic.BaseModel)


class PayloadType:
    """Adapter over a msgspec Struct, a pydantic model, or `dict` (untyped)."""

    def __init__(self, tp: Any) -> None:
        self.tp = tp
        self.is_pydantic = _is_pydantic(tp)

    def validate(self, payload: Any, *, where: str = "payload", code: str = ErrorCode.INVALID_MESSAGE.value) -> Any:
        """Dict → typed object, or InvalidMessage naming the field and the rule."""
        if self.tp is dict or self.tp is Any:
            if not isinstance(payload, dict):
                raise InvalidMessage(f"{where} must be an object", code=code, path=f"$.{where}")
            return payload
        if self.is_pydantic:
            if not isinstance(payload, dict):
                raise InvalidMessage(f"{where} invalid: expected an object - at `$.{where}`", code=code, path=f"$.{where}")
            try:
                # Strict JSON-mode validation, as msgspec does: the published JSON Schema says "integer", so
                # "3" must be refused here too, or a pydantic agent would accept what the contract forbids.
                return self.tp.model_validate_json(msgspec.json.encode(payload), strict=True)
            except TypeError as exc:
                raise InvalidMessage(f"{where} invalid: not JSON data ({exc})", code=code, path=f"$.{where}") from None
            except pydantic.ValidationError as exc:
                err = exc.errors()[0]
                loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
                path = f"$.{where}{loc}"
                raise InvalidMessage(f"{where} invalid: {err['msg']} - at `{path}`", code=code, path=path) from None
        try:
            return msgspec.convert(payload, self.tp)
        except msgspec.ValidationError as exc:
            sub = error_path(exc)
            path = f"$.{where}{sub[1:]}" if sub else f"$.{where}"
            msg = str(exc).split(" - at ")[0]
            raise InvalidMessage(f"{where} invalid: {msg} - at `{path}`", code=code, path=path) from None

    def dump(self, value: Any) -> dict[str, Any]:
        """Typed object (or dict) → JSON-ready dict."""
        if isinstance(value, dict):
            return value
        if self.is_pydantic or (pydantic is not None and isinstance(value, pydantic.BaseModel)):
            return value.model_dump(mode="json", by_alias=True)
        out = msgspec.to_builtins(value)
        if not isinstance(out, dict):
            raise InvalidMessage("a payload must be a JSON object", code=ErrorCode.INVALID_OUTPUT.value)
        return out

    def json_schema(self) -> dict[str, Any]:
        if self.tp is dict or self.tp is Any:
            return {"type": "object"}
        if self.is_pydantic:
            return self.tp.model_json_schema(by_alias=True)
        return msgspec.json.schema(self.tp)


@dataclass
class Capability:
    """A named operation with input and output payload types, versioned for schema evolution."""

    name: str
    input: PayloadType
    output: PayloadType
    version: int = 1
    description: str = ""
    upcasters: dict[tuple[str, int], Upcaster] = field(default_factory=dict)

    def validate_input(self, payload: Any) -> Any:
        return self.input.validate(payload)

    def validate_output(self, payload: Any) -> Any:
        return self.output.validate(payload, code=ErrorCode.INVALID_OUTPUT.value)

    def upcast(self, kind: str, payload: dict[str, Any], version: int) -> dict[str, Any]:
        """Bring a payload recorded at `version` up to the current version (kind: "input" or "output")."""
        if version > self.version:
            # Reading a newer payload as if it were ours would silently misread it.
            raise InvalidMessage(
                f"{self.name} {kind} v{version} is newer than the v{self.version} this code understands",
                code=ErrorCode.INVALID_MESSAGE.value,
            )
        while version < self.version:
            step = self.upcasters.get((kind, version))
            if step is None:
                raise InvalidMessage(
                    f"no upcaster for {self.name} {kind} v{version} → v{version + 1}",
                    code=ErrorCode.INVALID_MESSAGE.value,
                )
            payload = step(payload)
            version += 1
        return payload


class CapabilityRegistry:
    """Capability name → Capability. The process-wide default is `registry`."""

    def __init__(self) -> None:
        self._caps: dict[str, Capability] = {}

    def register(
        self,
        name: str,
        input: Any = dict,
        output: Any = dict,
        *,
        version: int = 1,
        description: str = "",
        replace: bool = False,
    ) -> Capability:
        existing = self._caps.get(name)
        if existing is not None and not replace:
            if existing.input.tp is input and existing.output.tp is output and existing.version == version:
                return existing
            from ledgerbus.errors import ConfigError

            raise ConfigError(f"capability {name!r} is already registered with other types")
        cap = Capability(name, PayloadType(input), PayloadType(output), version, description)
        self._caps[name] = cap
        return cap

    def add_upcaster(self, name: str, kind: str, from_version: int, fn: Upcaster) -> None:
        self.get(name).upcasters[(kind, from_version)] = fn

    def get(self, name: str) -> Capability:
        try:
            return self._caps[name]
        except KeyError:
            raise UnknownCapability(name) from None

    def find(self, name: str) -> Capability | None:
        return self._caps.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._caps

    def __iter__(self) -> Iterator[Capability]:
        return iter(sorted(self._caps.values(), key=lambda c: c.name))

    def __len__(self) -> int:
        return len(self._caps)


registry = CapabilityRegistry()
