"""The conversation list: newest first, filtered, paginated, kept live by /live (server-sent events)."""

from __future__ import annotations

from urllib.parse import urlencode

from ledgerbus.ui.html import badge, copyable, duration, e, layout, when
from ledgerbus.ui.index import Page
from ledgerbus.ui.summary import Filters, Summary

STATUSES = ("", "RUNNING", "DONE", "DEGRADED", "FAILED")


def row(s: Summary) -> str:
    codes = " ".join(f'<span class="code">{e(c)}</span>' for c in s.error_codes) or "—"
    href = f"/conversations/{s.conversation_id}"
    return (f'<tr data-id="{e(s.conversation_id)}" data-status="{e(s.status)}">'
            f'<td>{copyable(s.conversation_id, href=href)}</td><td>{badge(s.status)}</td>'
            f'<td>{e(s.capability)}</td><td>{when(s.started_at)}</td><td class="num">{duration(s.duration_ms)}</td>'
            f'<td class="num">{s.tasks}</td><td class="num">{s.retries}</td><td class="num">{s.errors}</td>'
            f'<td>{codes}</td><td>{e(", ".join(s.agents))}</td></tr>')


def _query(f: Filters, raw: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in raw.items() if v and k in ("status", "capability", "agent", "code", "since", "until", "q")}


def render(page: Page, f: Filters, raw: dict[str, str], *, live_after: int, first: bool) -> str:
    q = _query(f, raw)
    opts = "".join(f'<option value="{s}"{" selected" if s == f.status.upper() else ""}>{s or "any"}</option>'
                   for s in STATUSES)

    def field(name: str, label: str, placeholder: str = "") -> str:
        return (f'<label>{label}<input name="{name}" value="{e(raw.get(name, ""))}" placeholder="{e(placeholder)}">'
                "</label>")

    form = (f'<form class="filters" method="get" action="/" role="search">'
            f'{field("q", "id or prefix", "0192…")}<label>status<select name="status">{opts}</select></label>'
            f'{field("capability", "capability")}{field("agent", "agent")}{field("code", "error code", "STALLED")}'
            f'{field("since", "since", "2026-12-04T10:00Z")}{field("until", "until")}'
            '<button type="submit">Filter</button><a href="/">clear</a></form>')
    rows = "".join(row(s) for s in page.rows)
    empty = '' if page.rows else '<p class="empty" id="empty">No conversation matches.</p>'
    more = ""
    if page.next_cursor is not None:
        more = f'<p><a class="more" rel="next" href="/?{e(urlencode({**q, "before": page.next_cursor}))}">Older conversations →</a></p>'
    live = f' data-live="{live_after}" data-query="{e(urlencode(q))}"' if first else ""
    body = f"""<h1>Conversations</h1>{form}
<p class="hint" aria-live="polite"><span id="live-state">{"live: new conversations appear here" if first else "older page (not live)"}</span></p>
<div class="scroll"><table class="convs"{live}><thead><tr><th>id</th><th>status</th><th>capability</th><th>started</th>
<th>duration</th><th>tasks</th><th>retries</th><th>errors</th><th>codes</th><th>agents</th></tr></thead>
<tbody id="conv-rows">{rows}</tbody></table></div>{empty}{more}"""
    return layout("Conversations", body, nav="conversations")
