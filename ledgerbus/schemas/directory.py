"""The agent directory's wire types: what one live instance writes under `<type>.<instance>` in KV `LB_AGENTS`.

Here, beside the envelope, because they are part of the language-neutral contract (an agent in any
language announces itself with this JSON, and `schemas/directory-entry.schema.json` is generated from it).
"""

from __future__ import annotations

from typing import Any

import msgspec


class CapabilityInfo(msgspec.Struct, kw_only=True, rename="camel"):
    name: str
    version: int = 1
    description: str = ""
    input_schema: dict[str, Any] = msgspec.field(default_factory=dict)
    output_schema: dict[str, Any] = msgspec.field(default_factory=dict)


class InstanceInfo(msgspec.Struct, kw_only=True, rename="camel"):
    agent: str
    instance: str
    capabilities: list[CapabilityInfo]
    started_at: int
    seen_at: int
    handled: int = 0
    inflight: int = 0
    concurrency: int = 1
