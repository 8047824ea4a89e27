"""The agent directory's wire types: what one live instance writes under `<type>.<instance>` in KV `LB_AGENTS`.

Here, beside the envelope, because they are part of the language-neutral contract (an agent in any
language announces itself with this JSON, and `schemas/directory-entry.schema.json` is generated from it).
Descriptions only, no constraints: a reader skips an entry that fails to decode, so a tighter type here
would silently hide agents that announce today.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec


def _described(text: str) -> msgspec.Meta:
    return msgspec.Meta(description=text)


class CapabilityInfo(msgspec.Struct, kw_only=True, rename="camel"):
    """One capability an instance serves, with the JSON Schemas of its REQUEST and RESPONSE payloads."""

    name: Annotated[str, _described("capability name, e.g. research.search")]
    version: Annotated[int, _described("the capability's payload version (schema evolution); 1 unless bumped")] = 1
    description: str = ""
    input_schema: Annotated[dict[str, Any], _described("JSON Schema (2020-12) of the REQUEST payload")] = \
        msgspec.field(default_factory=dict)
    output_schema: Annotated[dict[str, Any], _described("JSON Schema (2020-12) of the RESPONSE payload")] = \
        msgspec.field(default_factory=dict)


class InstanceInfo(msgspec.Struct, kw_only=True, rename="camel"):
    """A live agent instance as it announces itself (KV bucket LB_AGENTS, key <agent>.<instance>)."""

    agent: Annotated[str, _described("the agent type: the address it consumes requests for, [a-z0-9_-]{1,64}")]
    instance: Annotated[str, _described("this instance's name, unique within its type; the key's second part")]
    capabilities: list[CapabilityInfo]
    started_at: Annotated[int, _described("when the instance started, unix ms")]
    seen_at: Annotated[int, _described("when this entry was written, unix ms; readers drop entries older than "
                                       "the bucket's TTL")]
    handled: Annotated[int, _described("requests answered so far")] = 0
    inflight: Annotated[int, _described("requests being handled now")] = 0
    concurrency: Annotated[int, _described("requests the instance handles at once")] = 1
    abandoned: Annotated[int, _described("handlers that ignored cancellation past their time limit: left "
                                         "running, their slots given back")] = 0
    pull_error: Annotated[str | None, _described("why this instance cannot pull its type's requests right now; "
                                                 "null while it can")] = None
