"""The tracer a Bus calls for what it publishes (bus/plugins.py's Tracer), on this package's spans."""

from __future__ import annotations

import asyncio
from typing import Any, ContextManager

from ledgerbus.bus.plugins import set_default_tracer
from ledgerbus.schemas.envelope import Envelope
from ledgerbus.tracing import instrument, setup


class BusTracer:
    def enabled(self) -> bool:
        return setup.enabled()

    def send_span(self, prefix: str, env: Envelope) -> ContextManager[dict[str, str]]:
        return instrument.send_span(prefix, env)

    def start_send(self, prefix: str, env: Envelope) -> tuple[Any, dict[str, str]]:
        return instrument.start_send(prefix, env)

    def end_send(self, span: Any, exc: BaseException | None) -> None:
        instrument.end_send(span, exc)

    def end_send_when_acked(self, span: Any, fut: "asyncio.Future[Any]") -> None:
        instrument.end_send_when_acked(span, fut)


TRACER = BusTracer()


def install() -> None:
    """Make this package's tracer the default of every Bus made without one."""
    set_default_tracer(TRACER)
