"""Small HTML helpers: escaping, status badges (shape and word, never colour alone), copyable ids, times."""

from __future__ import annotations

import datetime as _dt
import json
from html import escape
from typing import Any

#: Each status has a shape as well as a colour, so it reads the same to every eye and in print.
_SHAPES = {
    "DONE": "✔", "DEGRADED": "◆", "FALLBACK": "◆", "FAILED": "✖", "RUNNING": "●", "STALLED": "■", "TIMED_OUT": "▲",
    "PENDING": "○", "SENT": "→", "ACKED": "◔",
}


def e(value: object) -> str:
    return escape(str(value), quote=True)


def badge(status: str) -> str:
    return f'<span class="badge s-{e(status.lower())}"><span aria-hidden="true">{_SHAPES.get(status, "•")}</span> {e(status)}</span>'


def copyable(value: str, *, short: int | None = None, href: str | None = None) -> str:
    shown = e(value if short is None or len(value) <= short else value[:short] + "…")
    text = f'<a href="{e(href)}">{shown}</a>' if href else f'<code>{shown}</code>'
    return (f'<span class="id" title="{e(value)}">{text}<button type="button" class="copy" data-copy="{e(value)}"'
            f' aria-label="copy {e(value)}" title="copy">copy</button></span>')


def when(ms: int | None) -> str:
    if ms is None:
        return "—"
    stamp = _dt.datetime.fromtimestamp(ms / 1000, _dt.timezone.utc)
    return f'<time datetime="{stamp.isoformat()}">{stamp.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]}Z</time>'


def duration(ms: int | None) -> str:
    if ms is None:
        return "—"
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f} s"
    return f"{ms // 60_000} min {ms % 60_000 / 1000:.0f} s"


def pretty(value: Any) -> str:
    return f"<pre>{e(json.dumps(value, indent=2, sort_keys=True, default=str))}</pre>"


def layout(title: str, body: str, *, nav: str = "") -> str:
    links = [("/", "Conversations", "conversations"), ("/agents", "Agents", "agents"), ("/stalls", "Stalls & dead letters", "stalls"),
             ("/integrity", "Integrity", "integrity")]
    current = ' aria-current="page"'
    menu = "".join(f'<a href="{href}"{current if key == nav else ""}>{label}</a>' for href, label, key in links)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)} · ledgerbus</title><link rel="stylesheet" href="/static/ui.css"></head>
<body><a class="skip" href="#main">Skip to content</a>
<header class="top"><a class="brand" href="/">ledgerbus</a><nav aria-label="pages">{menu}</nav></header>
<main id="main">{body}</main><script src="/static/ui.js" defer></script></body></html>"""
