"""One exception hierarchy: everything ledgerbus raises derives from LedgerbusError.

Every public exception is defined here (other modules re-export the ones they raise, so
`from ledgerbus.agents.sdk import AgentError` keeps working). Timeouts are also built-in
`TimeoutError`s, so `except TimeoutError` catches them as well. nats-py's errors never leave the bus:
ledgerbus/bus/_nats/errors.py translates each into one of these (this module does not import nats-py).
An error that stands for one of sqlite3's is also sqlite3's exception, so code catching those keeps working.
The tree:

    LedgerbusError
    ├── ConfigError
    ├── ServerError
    │   ├── AuthorizationError
    │   ├── BusTimeout (also a TimeoutError)
    │   ├── BusClosed
    │   ├── NotFound
    │   ├── Refused
    │   │   └── WrongRevision
    │   └── PublishError
    │       ├── PublishTimeout (also a TimeoutError)
    │       ├── NoLedgerStream
    │       ├── PublishRefused
    │       └── ConnectionClosed
    ├── InvalidMessage
    │   └── UnknownCapability
    ├── AgentError (alias RemoteError)
    ├── TaskTimeout (also a TimeoutError)
    ├── StoreError
    │   ├── StoreConflict (also sqlite3.IntegrityError)
    │   └── StoreUnavailable (also sqlite3.OperationalError)
    ├── ConductorLost
    ├── BudgetExhausted
    ├── RedriveError
    └── UnknownAgent
"""

from __future__ import annotations

import sqlite3
from typing import Any


class LedgerbusError(Exception):
    """Base class of every error raised by ledgerbus."""


class ConfigError(LedgerbusError):
    """A setting is missing or has a value ledgerbus cannot use."""


class ServerError(LedgerbusError):
    """The NATS server could not be started, reached or configured."""


class AuthorizationError(ServerError):
    """The server refused the credentials, or the user may not do what was asked (a permissions violation)."""


class BusTimeout(ServerError, TimeoutError):
    """NATS gave no answer in time: a fetch found nothing to deliver, or a request or read went unanswered."""


class BusClosed(ServerError):
    """The connection to NATS is closed (closed by this process, or it gave up reconnecting)."""


class NotFound(ServerError):
    """What was asked for is not on the server: a stream, a consumer, a stream message or a KV key."""


class Refused(ServerError):
    """JetStream answered with an API error (`code`, `err_code` and `description` are the server's), or the
    client would not send the message (larger than the server's max_payload: `code` None)."""

    def __init__(self, message: str = "JetStream refused the request", *, code: int | None = None,
                 err_code: int | None = None, description: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.err_code = err_code
        self.description = description


class WrongRevision(Refused):
    """A conditional write lost: the KV entry (or subject) is no longer at the revision named."""


class PublishError(ServerError):
    """An append to the ledger failed: JetStream did not confirm that it stored the envelope.

    `Bus.publish` and `Bus.publish_async` raise only this (and InvalidMessage for an envelope the codec
    refuses); the subclasses say why. Nothing is known to be stored: publishing the same envelope again
    is safe, JetStream deduplicates it by id.
    """

    default = "the ledger did not confirm the append"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default)


class PublishTimeout(PublishError, TimeoutError):
    """No acknowledgement within the timeout: the server is slow, unreachable or reconnecting."""

    default = "no acknowledgement of the append in time (the server is slow, down or reconnecting)"


class NoLedgerStream(PublishError):
    """No stream stores the subject: the ledger stream does not exist, or the server has no JetStream."""

    default = "no stream stores this subject (is the ledger stream created and JetStream enabled?)"


class PublishRefused(PublishError):
    """JetStream answered the append with an API error (`code`, `err_code` and `description` are the server's),
    or the client would not send it (larger than the server's max_payload: `code` None)."""

    default = "JetStream refused the append"

    def __init__(self, message: str | None = None, *, code: int | None = None, err_code: int | None = None,
                 description: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.err_code = err_code
        self.description = description


class ConnectionClosed(PublishError):
    """The connection to NATS is closed (closed by this process, or it gave up reconnecting)."""

    default = "the connection to NATS is closed"


def is_authorization_failure(exc: BaseException | str) -> bool:
    """True for what nats-server says when it refuses a connection's credentials."""
    text = str(exc).lower()
    return "authorization violation" in text or "authentication" in text or "authorization failed" in text


class InvalidMessage(LedgerbusError):
    """An envelope or payload failed to decode or validate.

    `code` is one of the ErrorCode values (INVALID_MESSAGE, PAYLOAD_TOO_LARGE, ...);
    `path` names the offending field when it is known, so the error can be acted on.
    """

    def __init__(self, reason: str, *, code: str = "INVALID_MESSAGE", path: str | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.path = path
        self.details = details or {}


class UnknownCapability(InvalidMessage):
    """No registered capability has this name."""

    def __init__(self, capability: str) -> None:
        super().__init__(f"unknown capability {capability!r}", code="UNKNOWN_CAPABILITY",
                         path="$.capability")
        self.capability = capability


class AgentError(LedgerbusError):
    """An agent's ERROR answer, on both sides: a handler raises it to answer with an ERROR of its choosing,
    and a requester receives one when the agent it asked answered with an ERROR.

    `retryable=True` tells the orchestrator the failure may go away (a flaky dependency);
    the default is not to retry, because retrying a deterministic failure only burns budget.
    `sender` is the agent that answered with it when it was received (None when raised by a handler).
    """

    def __init__(self, code: str, message: str, *, retryable: bool = False,
                 details: dict[str, Any] | None = None, sender: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable
        self.details = details or {}
        self.sender = sender


#: The name the requester side has always used: the same class, so either name catches both.
RemoteError = AgentError


class TaskTimeout(LedgerbusError, TimeoutError):
    """No answer arrived before the task's deadline."""


class StoreError(LedgerbusError):
    """The event store could not be read or written."""


class StoreConflict(StoreError, sqlite3.IntegrityError):
    """A write conflicts with what the store holds (a constraint of the ledger's tables refused it)."""


class StoreUnavailable(StoreError, sqlite3.OperationalError):
    """SQLite could not write: the file is locked by another writer, read-only, or the disk is full."""


class ConductorLost(LedgerbusError):
    """This orchestrator lost its claim on a conversation (another took it over): it stopped conducting it."""


class BudgetExhausted(LedgerbusError):
    """re-execute reached its --max-requests budget; the step is not sent."""


class RedriveError(LedgerbusError):
    """A dead letter cannot be re-driven (already re-driven, or its request cannot be read)."""


class UnknownAgent(LedgerbusError):
    """Nothing serves this agent type: no live instance in the directory and no durable consumer."""
