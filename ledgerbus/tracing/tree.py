"""Draw spans as an indented tree: who called whom, with errors and (optionally) durations and ids.

Used by `ledgerbus trace show`, and by tests, which compare a live trace with a rebuilt one as text.
Siblings are ordered by their envelope id (UUIDv7: creation order), which a live run and a rebuild
agree on, falling back to start time for spans that stand for no envelope.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.resources import SERVICE_NAME
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from ledgerbus.tracing import conventions as C


@dataclass(frozen=True)
class TreeOptions:
    ids: bool = False
    durations: bool = False
    events: bool = True
    indent: str = "  "


def _sort_key(span: ReadableSpan) -> tuple[str, int, str]:
    attrs = span.attributes or {}
    return (str(attrs.get(C.MESSAGE_ID, "")), span.start_time or 0, span.name)


def label(span: ReadableSpan, opts: TreeOptions) -> str:
    attrs: Mapping[str, Any] = span.attributes or {}
    service = span.resource.attributes.get(SERVICE_NAME, "?")
    parts = [f"{span.name} ({service})"]
    op = attrs.get(C.OPERATION_TYPE)
    if op == "process" or attrs.get(C.LB_ACTION) == "REQUEST":
        parts.append(f"attempt={attrs.get(C.LB_ATTEMPT)}")
    if op == "send" and C.LB_ERROR_CODE in attrs:
        parts.append(f"code={attrs[C.LB_ERROR_CODE]}")
    if C.LB_OUTCOME in attrs:
        parts.append(f"outcome={attrs[C.LB_OUTCOME]}")
    if span.status.status_code is StatusCode.ERROR:
        parts.append(f"ERROR {attrs.get(C.ERROR_TYPE, '')}".rstrip())
    if opts.durations and span.start_time is not None and span.end_time is not None:
        parts.append(f"{(span.end_time - span.start_time) / 1e6:.1f}ms")
    if opts.ids and span.context is not None:
        parts.append(f"span={span.context.span_id:016x}")
    return " ".join(parts)


def render(spans: Sequence[ReadableSpan], opts: TreeOptions | None = None) -> str:
    """The spans as indented lines, one tree per trace; spans whose parent is absent are roots."""
    opts = opts or TreeOptions()
    present = {s.context.span_id for s in spans if s.context is not None}
    children: dict[int | None, list[ReadableSpan]] = {}
    for s in spans:
        parent = s.parent.span_id if s.parent is not None and s.parent.span_id in present else None
        if s.context is not None and parent == s.context.span_id:
            parent = None  # a span naming itself as parent (foreign data): draw it as a root, not a loop
        children.setdefault(parent, []).append(s)
    lines: list[str] = []
    drawn: set[int] = set()

    def walk(span: ReadableSpan, depth: int) -> None:
        if span.context is not None:
            if span.context.span_id in drawn:
                return  # a cycle in foreign parent ids: each span is drawn once
            drawn.add(span.context.span_id)
        pad = opts.indent * depth
        lines.append(pad + label(span, opts))
        if opts.events:
            for ev in span.events:
                lines.append(pad + opts.indent + f"* {ev.name}")
        for child in sorted(children.get(span.context.span_id if span.context else None, []), key=_sort_key):
            walk(child, depth + 1)

    roots = sorted(children.get(None, []), key=lambda s: (s.start_time or 0, _sort_key(s)))
    by_trace: dict[int, list[ReadableSpan]] = {}
    for r in roots:
        by_trace.setdefault(r.context.trace_id if r.context else 0, []).append(r)
    for trace_id, rs in by_trace.items():
        if opts.ids:
            lines.append(f"trace {trace_id:032x}")
        for r in rs:
            walk(r, 1 if opts.ids else 0)
    # Spans only reachable through a cycle of parent ids have no root: draw them anyway, never drop one.
    for s in spans:
        if s.context is not None and s.context.span_id not in drawn:
            walk(s, 0)
    return "\n".join(lines)
