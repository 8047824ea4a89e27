"""Where the Agents page finds a capability's schemas: what a live instance announces in the agent directory,
else the package's capability registry (what `ledgerbus schemas show NAME` prints)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from ledgerbus.schemas.capability import CapabilityRegistry
from ledgerbus.schemas.directory import InstanceInfo
from ledgerbus.ui.agents_page import Schema


def package_registry() -> CapabilityRegistry:
    """The registry `ledgerbus schemas` reads: the built-in capabilities, and any a loaded module registered."""
    from ledgerbus.examples import register
    from ledgerbus.schemas.capability import registry

    register()
    return registry


def schemas_for(names: Iterable[str], instances: Mapping[str, Sequence[InstanceInfo]] | None,
                registry: CapabilityRegistry) -> dict[str, Schema]:
    announced: dict[str, Schema] = {}
    for group in (instances or {}).values():
        for inst in group:
            for cap in inst.capabilities:
                announced.setdefault(cap.name, Schema(cap.input_schema, cap.output_schema,
                                                      f"announced by {inst.agent}.{inst.instance} (v{cap.version})"))
    out = {}
    for name in names:
        if name in announced:
            out[name] = announced[name]
            continue
        known = registry.find(name)
        if known is not None:
            out[name] = Schema(known.input.json_schema(), known.output.json_schema(),
                               f"from the package's registry (v{known.version}; ledgerbus schemas show {name})")
    return out


def capabilities(asked: Mapping[str, Sequence[str]],
                 instances: Mapping[str, Sequence[InstanceInfo]] | None) -> dict[str, tuple[str, ...]]:
    """Per agent type: the capabilities asked of it in the ledger and those its live instances announce."""
    out = {n: set(c) for n, c in asked.items()}
    for agent, group in (instances or {}).items():
        for inst in group:
            out.setdefault(agent, set()).update(c.name for c in inst.capabilities)
    return {n: tuple(sorted(c)) for n, c in out.items()}
