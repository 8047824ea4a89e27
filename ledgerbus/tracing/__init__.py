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

from typing import TYPE_CHECKING, Any

from ledgerbus.tracing.ids import parse_traceparent, span_id_for, trace_id_for
from ledgerbus.tracing.instrument import span
from ledgerbus.tracing.setup import configure, configure_from_env, enabled, force_flush, shutdown, tracer

__all__ = [
    "configure", "configure_from_env", "enabled", "force_flush", "shutdown", "tracer", "span",
    "trace_id_for", "span_id_for", "parse_traceparent", "rebuild", "render", "TreeOptions",
]

if TYPE_CHECKING:
    from ledgerbus.tracing.rebuild import rebuild
    from ledgerbus.tracing.tree import TreeOptions, render


def __getattr__(name: str) -> Any:
    if name == "rebuild":
        from ledgerbus.tracing.rebuild import rebuild

        return rebuild
    if name in ("render", "TreeOptions"):
        from ledgerbus.tracing import tree

        return getattr(tree, name)
    raise AttributeError(f"module 'ledgerbus.tracing' has no attribute {name!r}")
