"""Tracing: one OpenTelemetry trace per conversation, across every agent it touches.

Off by default (the no-op tracer, nothing built). On from the standard OTEL_* variables, or in-process:

    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    import ledgerbus.tracing

    exporter = InMemorySpanExporter()
    ledgerbus.tracing.configure(exporter=exporter, batch=False)   # sampler=... optional
    ...
    ledgerbus.tracing.shutdown()

A handler's own spans: `with ledgerbus.tracing.span("llm.complete"): ...` (a child of `ctx.span`).
After the fact: `rebuild(envelopes)` gives a recorded conversation's spans; `render(spans)` draws them.
"""

from __future__ import annotations

from ledgerbus.tracing.ids import parse_traceparent, span_id_for, trace_id_for
from ledgerbus.tracing.instrument import span
from ledgerbus.tracing.rebuild import rebuild  # the function, not the submodule of the same name
from ledgerbus.tracing.setup import configure, configure_from_env, enabled, force_flush, shutdown, tracer
from ledgerbus.tracing.tree import TreeOptions, render
from ledgerbus.tracing import bus as _bus

_bus.install()  # every Bus made without a tracer of its own traces through this package

__all__ = [
    "configure", "configure_from_env", "enabled", "force_flush", "shutdown", "tracer", "span",
    "trace_id_for", "span_id_for", "parse_traceparent", "rebuild", "render", "TreeOptions",
]
