"""ledgerbus: an event-sourced message bus for teams of AI agents.

The public API is what this module exports. Names resolve lazily (PEP 562), so importing
`ledgerbus` — or its pytest plugin — costs nothing until something is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    # errors
    "LedgerbusError": "ledgerbus.errors",
    "ConfigError": "ledgerbus.errors",
    "ServerError": "ledgerbus.errors",
    "AuthorizationError": "ledgerbus.errors",
    "PublishError": "ledgerbus.errors",
    "PublishTimeout": "ledgerbus.errors",
    "NoLedgerStream": "ledgerbus.errors",
    "PublishRefused": "ledgerbus.errors",
    "ConnectionClosed": "ledgerbus.errors",
    "BusTimeout": "ledgerbus.errors",
    "BusClosed": "ledgerbus.errors",
    "NotFound": "ledgerbus.errors",
    "Refused": "ledgerbus.errors",
    "WrongRevision": "ledgerbus.errors",
    "InvalidMessage": "ledgerbus.errors",
    "UnknownCapability": "ledgerbus.errors",
    "AgentError": "ledgerbus.errors",
    "RemoteError": "ledgerbus.errors",
    "TaskTimeout": "ledgerbus.errors",
    "StoreError": "ledgerbus.errors",
    "StoreConflict": "ledgerbus.errors",
    "StoreUnavailable": "ledgerbus.errors",
    "ConductorLost": "ledgerbus.errors",
    "BudgetExhausted": "ledgerbus.errors",
    "RedriveError": "ledgerbus.errors",
    "UnknownAgent": "ledgerbus.errors",
    # wire contract
    "Envelope": "ledgerbus.schemas.envelope",
    "ErrorInfo": "ledgerbus.schemas.envelope",
    "new_request": "ledgerbus.schemas.envelope",
    "Action": "ledgerbus.schemas.codes",
    "ErrorCode": "ledgerbus.schemas.codes",
    "Codec": "ledgerbus.schemas.codec",
    "Capability": "ledgerbus.schemas.capability",
    "CapabilityRegistry": "ledgerbus.schemas.capability",
    "registry": "ledgerbus.schemas.capability",
    # bus
    "Bus": "ledgerbus.bus.connection",
    "Requester": "ledgerbus.bus.requester",
    "EmbeddedServer": "ledgerbus.bus.server",
    "ServerConfig": "ledgerbus.bus.server",
    "LedgerConfig": "ledgerbus.bus.streams",
    "ConsumerSettings": "ledgerbus.bus.streams",
    # event store
    "EventStore": "ledgerbus.eventstore.base",
    "EventSource": "ledgerbus.eventstore.base",
    "EventFilter": "ledgerbus.eventstore.base",
    "StoredEvent": "ledgerbus.eventstore.base",
    "SQLiteEventStore": "ledgerbus.eventstore.sqlite",
    "Recorder": "ledgerbus.eventstore.recorder",
    "JetStreamLedger": "ledgerbus.eventstore.jetstream",
    "SQLiteSource": "ledgerbus.eventstore.sqlite_source",
    "Folds": "ledgerbus.eventstore.folds",
    "fold_source": "ledgerbus.eventstore.folds",
    "Upcaster": "ledgerbus.eventstore.upcast",
    "VerifyReport": "ledgerbus.eventstore.integrity",
    "resimulate": "ledgerbus.orchestrator.replaymodes",
    "re_execute": "ledgerbus.orchestrator.replaymodes",
    "fold": "ledgerbus.eventstore.fold",
    "apply": "ledgerbus.eventstore.fold",
    "ConversationState": "ledgerbus.eventstore.fold",
    "ConversationStatus": "ledgerbus.eventstore.fold",
    "TaskState": "ledgerbus.eventstore.fold",
    "TaskStatus": "ledgerbus.eventstore.fold",
    # agents
    "Agent": "ledgerbus.agents.sdk",
    "Context": "ledgerbus.agents.context",
    "AgentRuntime": "ledgerbus.agents.runtime",
    "Directory": "ledgerbus.bus.directory",
    # orchestrator
    "Orchestrator": "ledgerbus.orchestrator.engine",
    "ConversationResult": "ledgerbus.orchestrator.inflight",
    "Plan": "ledgerbus.orchestrator.plan",
    "Step": "ledgerbus.orchestrator.plan",
    "PlanContext": "ledgerbus.orchestrator.plan",
    "Decomposer": "ledgerbus.orchestrator.plan",
    "PolicySet": "ledgerbus.orchestrator.policy",
    "TaskPolicy": "ledgerbus.orchestrator.policy",
    "BreakerPolicy": "ledgerbus.orchestrator.policy",
    "RateLimitPolicy": "ledgerbus.orchestrator.policy",
    "FallbackValue": "ledgerbus.orchestrator.policy",
    "FallbackCapability": "ledgerbus.orchestrator.policy",
    "RetryPolicy": "ledgerbus.orchestrator.backoff",
    "Backoff": "ledgerbus.orchestrator.backoff",
    "Router": "ledgerbus.orchestrator.router",
    # security mode and dead letters
    "Deployment": "ledgerbus.security.deployment",
    "TLSFiles": "ledgerbus.security.deployment",
    "Identity": "ledgerbus.security.keys",
    "SecureBus": "ledgerbus.security.securebus",
    "provision": "ledgerbus.security.securebus",
    "DeadLetterWatcher": "ledgerbus.security.deadletters",
    # testing agents (the pytest plugin's run_agent)
    "AgentHarness": "ledgerbus.testing",
    "Conversation": "ledgerbus.testing",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = "ledgerbus._version" if name == "__version__" else _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ledgerbus' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # static type checkers see the real names
    from ledgerbus._version import __version__
    from ledgerbus.agents.context import Context
    from ledgerbus.bus.directory import Directory
    from ledgerbus.agents.runtime import AgentRuntime
    from ledgerbus.agents.sdk import Agent
    from ledgerbus.bus.connection import Bus
    from ledgerbus.bus.requester import Requester
    from ledgerbus.bus.server import EmbeddedServer, ServerConfig
    from ledgerbus.bus.streams import ConsumerSettings, LedgerConfig
    from ledgerbus.errors import (AgentError, AuthorizationError, BudgetExhausted, BusClosed, BusTimeout,
                                  ConductorLost, ConfigError, ConnectionClosed, InvalidMessage, NotFound, Refused,
                                  WrongRevision, LedgerbusError, NoLedgerStream, PublishError,
                                  PublishRefused, PublishTimeout, RedriveError, RemoteError, ServerError,
                                  StoreConflict, StoreError, StoreUnavailable, TaskTimeout, UnknownAgent,
                                  UnknownCapability)
    from ledgerbus.eventstore.base import EventFilter, EventSource, EventStore, StoredEvent
    from ledgerbus.eventstore.folds import Folds, fold_source
    from ledgerbus.eventstore.sqlite_source import SQLiteSource
    from ledgerbus.eventstore.fold import (ConversationState, ConversationStatus, TaskState, TaskStatus, apply,
                                           fold)
    from ledgerbus.eventstore.integrity import VerifyReport
    from ledgerbus.eventstore.jetstream import JetStreamLedger
    from ledgerbus.eventstore.recorder import Recorder
    from ledgerbus.eventstore.upcast import Upcaster
    from ledgerbus.orchestrator.replaymodes import re_execute, resimulate
    from ledgerbus.eventstore.sqlite import SQLiteEventStore
    from ledgerbus.orchestrator.backoff import Backoff, RetryPolicy
    from ledgerbus.orchestrator.engine import Orchestrator
    from ledgerbus.orchestrator.inflight import ConversationResult
    from ledgerbus.orchestrator.plan import Decomposer, Plan, PlanContext, Step
    from ledgerbus.orchestrator.policy import (BreakerPolicy, FallbackCapability, FallbackValue, PolicySet,
                                               RateLimitPolicy, TaskPolicy)
    from ledgerbus.orchestrator.router import Router
    from ledgerbus.testing import AgentHarness, Conversation
    from ledgerbus.security.deadletters import DeadLetterWatcher
    from ledgerbus.security.deployment import Deployment, TLSFiles
    from ledgerbus.security.keys import Identity
    from ledgerbus.security.securebus import SecureBus, provision
    from ledgerbus.schemas.capability import Capability, CapabilityRegistry, registry
    from ledgerbus.schemas.codec import Codec
    from ledgerbus.schemas.codes import Action, ErrorCode
    from ledgerbus.schemas.envelope import Envelope, ErrorInfo, new_request
