"""Where a conversation's trace is in Jaeger: its trace id is the conversation id (tracing/ids.py). Pure."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from ledgerbus.tracing.ids import trace_id_for

#: Jaeger's query service (UI) port, beside the OTLP ports of the all-in-one image deploy/ runs.
UI_PORT = 16686


def jaeger_base(explicit: str | None, env: Mapping[str, str]) -> str | None:
    """The Jaeger UI to link to: the one given (--jaeger-url), else the OTLP endpoint's host at Jaeger's UI
    port when tracing is configured (OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT), else None (no link)."""
    if explicit:
        return explicit.rstrip("/")
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not endpoint:
        return None
    try:
        parts = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
        host = parts.hostname
    except ValueError:
        return None
    if not host:
        return None
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme or 'http'}://{host}:{UI_PORT}"


def trace_url(base: str, conversation_id: str) -> str:
    return f"{base}/trace/{trace_id_for(conversation_id):032x}"
