"""An AsyncAPI 3.0 document of a deployment: its subjects as channels, what each agent receives and answers.

Channels are the subject templates (`<prefix>.<agent>.REQUEST.{conversationId}` per agent type, and
`<prefix>.{replyTo}.{action}.{conversationId}` for answers); one `receive` operation per agent and
capability, with the REQUEST message it takes and the ACK/PROGRESS/RESPONSE/ERROR messages it replies
with. Message payloads are the envelope schema with `payload` narrowed to the capability's schema.
Pure: it turns capability descriptions into a dict, so it can be tested and validated offline.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import msgspec

from ledgerbus.schemas.envelope import Envelope

ASYNCAPI_VERSION = "3.0.0"
REPLIES = "replies"
ANSWERS = ("ACK", "PROGRESS", "RESPONSE", "ERROR")


class CapabilitySpec(Protocol):
    """What the document needs to know about a capability (the directory's CapabilityInfo has it)."""

    name: str
    version: int
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]


class _Components:
    """components/schemas, filled by hoisting each JSON Schema's `$defs` so every `$ref` resolves in the document."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}
        self._raw: dict[str, Any] = {}  # definitions as written, to recognise the same type seen twice

    def _name(self, wanted: str, body: Any) -> str:
        name, n = wanted, 1
        while name in self._raw and self._raw[name] != body:
            n += 1
            name = f"{wanted}_{n}"
        return name

    def hoist(self, schema: dict[str, Any]) -> dict[str, Any]:
        schema = json.loads(json.dumps(schema))  # a private copy we may rewrite
        defs: dict[str, Any] = schema.pop("$defs", {}) or {}
        renames: dict[str, str] = {}
        # Reserve names first so definitions that refer to each other are rewritten consistently.
        for key, body in defs.items():
            renames[key] = self._name(key, body)
            self._raw[renames[key]] = body

        def rewrite(node: Any) -> Any:
            if isinstance(node, dict):
                out = {}
                for k, v in node.items():
                    if k == "$ref" and isinstance(v, str) and v.startswith("#/$defs/"):
                        out[k] = "#/components/schemas/" + renames.get(v[len("#/$defs/"):], v[len("#/$defs/"):])
                    else:
                        out[k] = rewrite(v)
                return out
            if isinstance(node, list):
                return [rewrite(v) for v in node]
            return node

        for key, body in defs.items():
            self.schemas[renames[key]] = rewrite(body)
        return rewrite(schema)  # type: ignore[no-any-return]


def _message(name: str, title: str, summary: str, envelope_ref: dict[str, Any], narrow: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "title": title,
        "summary": summary,
        "contentType": "application/json",
        "correlationId": {"description": "answers share the REQUEST's taskId", "location": "$message.payload#/taskId"},
        "headers": {"type": "object", "properties": {
            "Nats-Msg-Id": {"type": "string", "description": "the envelope id: JetStream deduplicates on it"},
            "traceparent": {"type": "string", "description": "W3C trace context"},
        }},
        "payload": {"allOf": [envelope_ref, {"type": "object", "properties": narrow}]},
    }


def build(
    agents: Mapping[str, Sequence[CapabilitySpec]],
    *,
    prefix: str = "lb",
    servers: Mapping[str, str] | None = None,
    title: str = "ledgerbus deployment",
    version: str = "0.1.0",
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document for `agents` (agent type → its capabilities)."""
    comp = _Components()
    envelope_ref = comp.hoist(msgspec.json.schema(Envelope))
    messages: dict[str, Any] = {
        "ack": _message("ACK", "receipt", "The agent took the request; work starts.", envelope_ref,
                        {"action": {"const": "ACK"}}),
        "progress": _message("PROGRESS", "progress", "A heartbeat with whatever the agent reports.", envelope_ref,
                             {"action": {"const": "PROGRESS"}}),
        "error": _message("ERROR", "error", "The request failed; `error` says why, with a code.", envelope_ref,
                          {"action": {"const": "ERROR"}, "error": {"type": "object", "required": ["code", "message"]}}),
    }
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    reply_messages: dict[str, Any] = {k: {"$ref": f"#/components/messages/{k}"} for k in messages}
    for agent in sorted(agents):
        caps = sorted(agents[agent], key=lambda c: c.name)
        channel_id = f"{agent}.requests"
        channel_msgs: dict[str, Any] = {}
        for cap in caps:
            req_id, resp_id = f"{cap.name}.request", f"{cap.name}.response"
            summary = cap.description or cap.name
            messages[req_id] = _message("REQUEST", f"{cap.name} request (v{cap.version})", summary, envelope_ref, {
                "action": {"const": "REQUEST"}, "capability": {"const": cap.name},
                "payload": comp.hoist(cap.input_schema or {"type": "object"})})
            messages[resp_id] = _message("RESPONSE", f"{cap.name} response (v{cap.version})", summary, envelope_ref, {
                "action": {"const": "RESPONSE"}, "capability": {"const": cap.name},
                "payload": comp.hoist(cap.output_schema or {"type": "object"})})
            channel_msgs[req_id] = {"$ref": f"#/components/messages/{req_id}"}
            reply_messages[resp_id] = {"$ref": f"#/components/messages/{resp_id}"}
            operations[f"{agent}.{cap.name}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{channel_id}"},
                "title": f"{agent} serves {cap.name}",
                "summary": summary,
                "messages": [{"$ref": f"#/channels/{channel_id}/messages/{req_id}"}],
                "reply": {
                    "channel": {"$ref": f"#/channels/{REPLIES}"},
                    "messages": [{"$ref": f"#/channels/{REPLIES}/messages/{m}"}
                                 for m in ("ack", "progress", resp_id, "error")],
                },
            }
        channels[channel_id] = {
            "address": f"{prefix}.{agent}.REQUEST.{{conversationId}}",
            "title": f"requests to {agent}",
            "description": f"REQUESTs for agent type {agent}; its instances share one durable pull consumer.",
            "parameters": {"conversationId": {"description": "the conversation the request belongs to"}},
            "messages": channel_msgs,
        }
    channels[REPLIES] = {
        "address": f"{prefix}.{{replyTo}}.{{action}}.{{conversationId}}",
        "title": "answers",
        "description": "ACK, PROGRESS, RESPONSE and ERROR envelopes, addressed to the requester's replyTo.",
        "parameters": {
            "replyTo": {"description": "the requester's address (its `replyTo`, else its `sender`)"},
            "action": {"enum": list(ANSWERS), "description": "the answer's action"},
            "conversationId": {"description": "the conversation"},
        },
        "messages": reply_messages,
    }
    doc: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": title,
            "version": version,
            "description": "Agents exchange JSON envelopes over NATS; every envelope is appended to the JetStream "
                           f"stream of subjects `{prefix}.>` (the ledger).",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"schemas": comp.schemas, "messages": messages},
    }
    if servers:
        doc["servers"] = {name: {"host": host, "protocol": "nats", "description": "NATS with JetStream"}
                          for name, host in servers.items()}
    return doc


def from_agents(agents: Iterable[Any]) -> dict[str, list[Any]]:
    """agent type → capability descriptions, for in-process Agent objects."""
    from ledgerbus.agents.directory import describe

    return {a.name: describe(a) for a in agents}
