"""Span names and attributes: OpenTelemetry messaging conventions plus `ledgerbus.*`.

One module builds them for both live spans and spans rebuilt from the ledger, so the two agree.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from ledgerbus.schemas.envelope import Envelope

SYSTEM = "nats"
INSTRUMENTATION = "ledgerbus"

# messaging.* (semantic conventions for messaging spans)
MESSAGING_SYSTEM = "messaging.system"
DESTINATION = "messaging.destination.name"
DESTINATION_TEMPLATE = "messaging.destination.template"
MESSAGE_ID = "messaging.message.id"
CONVERSATION_ID = "messaging.message.conversation_id"
OPERATION_TYPE = "messaging.operation.type"
OPERATION_NAME = "messaging.operation.name"
CONSUMER_GROUP = "messaging.consumer.group.name"
BODY_SIZE = "messaging.message.body.size"
ERROR_TYPE = "error.type"

# ledgerbus.*
LB_CONVERSATION = "ledgerbus.conversation_id"
LB_TASK = "ledgerbus.task_id"
LB_ATTEMPT = "ledgerbus.attempt"
LB_ACTION = "ledgerbus.action"
LB_CAPABILITY = "ledgerbus.capability"
LB_SENDER = "ledgerbus.sender"
LB_RECIPIENT = "ledgerbus.recipient"
LB_CAUSATION = "ledgerbus.causation_id"
LB_ERROR_CODE = "ledgerbus.error.code"
LB_RETRYABLE = "ledgerbus.error.retryable"
LB_INSTANCE = "ledgerbus.instance"
LB_AGENT = "ledgerbus.agent"
LB_OUTCOME = "ledgerbus.outcome"
LB_ENVELOPE = "ledgerbus.envelope_id"
LB_REBUILT = "ledgerbus.rebuilt"
LB_COMPONENT = "ledgerbus.component"


@lru_cache(maxsize=1024)  # a process talks on few channels; every publish asks
def _channel(prefix: str, recipient: str, action: str) -> tuple[str, str]:
    # The conversation id is the only high-cardinality token; recipient and action name the channel.
    template = f"{prefix}.{recipient}.{action}.{{conversationId}}"
    return template, f"send {template}"


def destination_template(prefix: str, env: Envelope) -> str:
    return _channel(prefix, env.recipient, env.action.value)[0]


def send_name(prefix: str, env: Envelope) -> str:
    return _channel(prefix, env.recipient, env.action.value)[1]


def process_name(capability: str) -> str:
    return f"process {capability}"


def conversation_name(capability: str) -> str:
    return f"conversation {capability}"


def _common(env: Envelope) -> dict[str, Any]:
    # Each attribute costs the SDK a validation on the hot path: no duplicates (the conversation id is
    # messaging.message.conversation_id; the agent is messaging.consumer.group.name).
    return {
        MESSAGING_SYSTEM: SYSTEM,
        CONVERSATION_ID: env.conversation_id,
        LB_TASK: env.task_id,
        LB_ATTEMPT: env.attempt,
        LB_CAPABILITY: env.capability,
    }


def send_attributes(prefix: str, env: Envelope) -> dict[str, Any]:
    action = env.action.value
    attrs = _common(env)
    attrs.update({
        DESTINATION: f"{prefix}.{env.recipient}.{action}.{env.conversation_id}",
        DESTINATION_TEMPLATE: _channel(prefix, env.recipient, action)[0],
        MESSAGE_ID: env.id,
        OPERATION_TYPE: "send",
        OPERATION_NAME: "send",
        LB_ACTION: action,
        LB_SENDER: env.sender,
        LB_RECIPIENT: env.recipient,
    })
    if env.causation_id:
        attrs[LB_CAUSATION] = env.causation_id
    if env.error is not None:
        attrs[LB_ERROR_CODE] = env.error.code
        attrs[LB_RETRYABLE] = env.error.retryable
    return attrs


def process_attributes(prefix: str, req: Envelope, agent: str, instance: str | None) -> dict[str, Any]:
    attrs = _common(req)
    attrs.update({
        DESTINATION: f"{prefix}.{req.recipient}.{req.action.value}.{req.conversation_id}",
        DESTINATION_TEMPLATE: destination_template(prefix, req),
        MESSAGE_ID: req.id,
        OPERATION_TYPE: "process",
        CONSUMER_GROUP: agent,
        LB_ACTION: req.action.value,
    })
    if instance:
        attrs[LB_INSTANCE] = instance
    return attrs


def conversation_attributes(root: Envelope) -> dict[str, Any]:
    attrs = _common(root)
    attrs[LB_CONVERSATION] = root.conversation_id
    attrs[LB_SENDER] = root.sender
    attrs[LB_ENVELOPE] = root.id
    return attrs


def decision_event(env: Envelope) -> tuple[str, dict[str, Any]]:
    """A span event for an orchestrator decision (retry, stall, breaker, fallback…): named by its code."""
    code = env.error.code if env.error is not None else env.action.value
    attrs: dict[str, Any] = {LB_ERROR_CODE: code, LB_TASK: env.task_id, LB_ATTEMPT: env.attempt,
                             LB_ENVELOPE: env.id, LB_CAPABILITY: env.capability}
    if env.error is not None and env.error.message:
        attrs["message"] = env.error.message
    return code, attrs
