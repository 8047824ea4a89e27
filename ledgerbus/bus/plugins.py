"""What plugs into the bus: a signer for what it appends, a tracer for what it sends.

The bus defines the protocols and calls them; `ledgerbus.security` and `ledgerbus.tracing` implement
them, so the bus imports neither. A Bus is given its signer when it is made (`Bus(..., signer=...)`);
a tracer too, or else the process's default, which `ledgerbus.tracing` installs when it is imported.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any, ContextManager, Protocol

from ledgerbus.schemas.envelope import Envelope


class Signer(Protocol):
    """Signs the bodies a bus appends to the ledger."""

    def signature_headers(self, subject: str, payload: bytes) -> Mapping[str, str]:
        """The headers that carry the signature of `payload` published on `subject`."""
        ...


class Tracer(Protocol):
    """The PRODUCER span of each envelope a bus publishes, and the trace headers it carries."""

    def enabled(self) -> bool: ...

    def send_span(self, prefix: str, env: Envelope) -> ContextManager[dict[str, str]]:
        """`with tracer.send_span(prefix, env) as headers:` publish `env` with these extra headers."""
        ...

    def start_send(self, prefix: str, env: Envelope) -> tuple[Any, dict[str, str]]: ...

    def end_send(self, span: Any, exc: BaseException | None) -> None: ...

    def end_send_when_acked(self, span: Any, fut: "asyncio.Future[Any]") -> None: ...


class NoTracer:
    """Tracing off: no span, no header."""

    def enabled(self) -> bool:
        return False

    def send_span(self, prefix: str, env: Envelope) -> ContextManager[dict[str, str]]:
        return contextlib.nullcontext({})

    def start_send(self, prefix: str, env: Envelope) -> tuple[Any, dict[str, str]]:
        return None, {}

    def end_send(self, span: Any, exc: BaseException | None) -> None:
        pass

    def end_send_when_acked(self, span: Any, fut: "asyncio.Future[Any]") -> None:
        pass


NO_TRACER: Tracer = NoTracer()
_default: list[Tracer] = [NO_TRACER]


def set_default_tracer(tracer: Tracer) -> None:
    """The tracer of every Bus made without one (ledgerbus.tracing installs its own on import)."""
    _default[0] = tracer


def default_tracer() -> Tracer:
    return _default[0]
