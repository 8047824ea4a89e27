"""One conversation: its state at a chosen position (time travel), the plan, the timeline, a waterfall."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from urllib.parse import urlencode

import msgspec

from ledgerbus.eventstore.base import StoredEvent
from ledgerbus.eventstore.fold import ConversationState, TaskState
from opentelemetry.trace import SpanKind, StatusCode

from ledgerbus.orchestrator import plannote
from ledgerbus.tracing import conventions as C
from ledgerbus.tracing.rebuild import rebuild
from ledgerbus.eventstore.timetravel import Change, Point, diff_conversations, state_at
from ledgerbus.ui.jaeger import trace_url
from ledgerbus.ui.html import badge, copyable, duration, e, layout, pretty, when
from ledgerbus.ui.summary import in_words

#: Codes that mark an attempt the orchestrator gave up watching: shown as stalls in the timeline.
STALL_CODES = frozenset({"STALLED", "TIMED_OUT", "NO_RECEIPT", "DEADLINE_EXCEEDED"})
BACKOFF_CODES = frozenset({"RETRY_SCHEDULED", "RATE_LIMITED", "BREAKER_OPEN"})
#: A silence between two envelopes longer than this is marked in the timeline.
GAP_MS = 1000


def _step(conversation_id: str, task_id: str) -> str:
    # Subtask ids are the conversation's root task id plus `_<step>`: the step is what a person named.
    # Split at the first `_`: root ids are UUIDs, and a re-run step is `<step>_rerunN`.
    return task_id.split("_", 1)[1] if "_" in task_id else "(whole conversation)"


def _levels(tasks: Sequence[TaskState]) -> dict[str, int]:
    """Each task's column in the plan graph: one past every task that finished before it was asked.

    For ledgers without the plan's note (plannote.py), whose order can only be read off what the orchestrator did."""
    level: dict[str, int] = {}
    for t in sorted(tasks, key=lambda t: (t.requested_at or 0)):
        before = [level[o.task_id] for o in tasks if o.task_id in level and o.finished_at is not None
                  and t.requested_at is not None and o.finished_at <= t.requested_at]
        level[t.task_id] = 1 + max(before) if before else 0
    return level


_SUFFIX = re.compile(r"_(?:fb|rerun)\d+$")


def _base(step: str) -> str:
    """The plan step a task stands for: a fallback's (`_fb1`) or a re-run's (`_rerun1`) is its step's."""
    while (m := _SUFFIX.search(step)) is not None:
        step = step[:m.start()]
    return step


def _depths(deps: Mapping[str, tuple[str, ...]]) -> dict[str, int]:
    """Each step's column: one past its deepest dependency (the longest path from a step with none)."""
    depth: dict[str, int] = {}

    def of(step: str, seen: frozenset[str] = frozenset()) -> int:
        if step not in depth:
            known = [d for d in deps.get(step, ()) if d in deps and d not in seen]
            depth[step] = 1 + max((of(d, seen | {step}) for d in known), default=-1)
        return depth[step]

    for step in deps:
        of(step)
    return depth


def _task_card(st: ConversationState, t: TaskState, deps: tuple[str, ...] | None = None) -> str:
    decisions = "".join(
        f'<li class="decision d-{e(d.code.lower())}"><span class="pos">@{d.position}</span> attempt {d.attempt}: '
        f'<strong>{e(in_words(d.code))}</strong> <span class="muted">{e(d.message)}</span></li>'
        for d in t.decisions)
    err = (f'<p class="err"><span class="code">{e(t.error.code)}</span> {e(t.error.message)}</p>'
           if t.error is not None else "")
    # A step that fell back did not do its work: it is marked as such, whatever status the fold gives it.
    shown = "FALLBACK" if t.fallback else t.status.value
    return (f'<article class="task s-{e(shown.lower())}" data-task="{e(_step(st.conversation_id, t.task_id))}"'
            f' data-status="{e(shown)}"{_deps_attr(deps)}><h3>{e(_step(st.conversation_id, t.task_id))}</h3>'
            f'<p>{badge(shown)}</p><p class="muted">{e(t.capability)} → {e(t.agent)}</p>{_after(deps)}'
            f'<p>attempts: <strong>{t.attempts}</strong> · {duration(t.duration_ms)}</p>{err}'
            f'{"<ul class=decisions>" + decisions + "</ul>" if decisions else ""}</article>')


def _deps_attr(deps: tuple[str, ...] | None) -> str:
    return "" if deps is None else f' data-deps="{e(" ".join(deps))}"'


def _after(deps: tuple[str, ...] | None) -> str:
    return f'<p class="after">after {e(", ".join(deps))}</p>' if deps else ""


def _pending_card(step: str, deps: tuple[str, ...]) -> str:
    return (f'<article class="task s-pending" data-task="{e(step)}" data-status="PENDING"{_deps_attr(deps)}>'
            f'<h3>{e(step)}</h3><p>{badge("PENDING")}</p><p class="muted">not asked yet</p>{_after(deps)}</article>')


def plan_graph(st: ConversationState, deps: Mapping[str, tuple[str, ...]] | None = None) -> str:
    """The plan as columns of steps. With the plan's recorded edges (`deps`), each step sits one column past
    its deepest dependency and the page's script draws an arrow per edge; without them, stages are inferred."""
    tasks = st.subtasks
    if deps is None:
        if not tasks:
            return '<p class="empty">No steps yet at this position.</p>'
        level = _levels(tasks)
        cols = []
        for n in range(max(level.values()) + 1):
            cards = "".join(_task_card(st, t) for t in tasks if level[t.task_id] == n)
            cols.append(f'<div class="col" aria-label="stage {n + 1}">{cards}</div>')
        return '<div class="graph">' + '<div class="arrow" aria-hidden="true">→</div>'.join(cols) + "</div>"
    depth = _depths(deps)
    by_step: dict[str, list[TaskState]] = {}
    for t in tasks:
        by_step.setdefault(_base(_step(st.conversation_id, t.task_id)), []).append(t)
    extra = [s for s in by_step if s not in deps]  # asked, but not in the recorded plan (a re-run's own step)
    columns: dict[int, list[str]] = {}
    for step in [*deps, *extra]:
        n = depth.get(step, 0)
        mine = by_step.get(step)
        cards = ("".join(_task_card(st, t, deps.get(step, ())) for t in mine) if mine
                 else _pending_card(step, deps.get(step, ())))
        columns.setdefault(n, []).append(cards)
    cols = [f'<div class="col" aria-label="stage {n + 1}">{"".join(columns[n])}</div>' for n in sorted(columns)]
    return f'<div class="graph recorded">{"".join(cols)}</div>'


PLAN_HINTS = {
    True: "The plan the orchestrator recorded: each arrow is a dependency; a step with several arrows in waits for all of them (fan-in).",
    False: "Stages read off the ledger's timing (it holds no recorded plan): a step is drawn after every step that finished before it was asked.",
}


def _row_class(ev: StoredEvent, gap: int | None, at: int) -> list[str]:
    cls = []
    code = ev.envelope.error.code if ev.envelope.error is not None else ""
    if code in STALL_CODES:
        cls.append("stall")
    elif code in BACKOFF_CODES:
        cls.append("backoff")
    elif ev.envelope.action.value == "ERROR" or code:
        cls.append("error")
    if gap is not None and gap > GAP_MS:
        cls.append("gap")
    if ev.position > at:
        cls.append("future")
    if ev.position == at:
        cls.append("here")
    return cls


def timeline(events: Sequence[StoredEvent], at: int, cid: str) -> str:
    rows = []
    prev: int | None = None
    start = events[0].envelope.timestamp if events else 0
    for ev in events:
        env = ev.envelope
        gap = None if prev is None else env.timestamp - prev
        prev = env.timestamp
        cls = _row_class(ev, gap, at)
        code = env.error.code if env.error is not None else ""
        marks = []
        if "stall" in cls:
            marks.append('<span class="mark m-stall">stall</span>')
        if "backoff" in cls:
            marks.append('<span class="mark m-backoff">backoff</span>')
        if "gap" in cls:
            marks.append('<span class="mark m-gap">gap</span>')
        body = {"payload": env.payload} if env.error is None else {"error": msgspec.to_builtins(env.error),
                                                                    "payload": env.payload}
        href = f"/conversations/{cid}?at={ev.position}"
        rows.append(
            f'<tr class="{" ".join(cls)}" data-position="{ev.position}"><td class="num"><a href="{href}">{ev.position}</a></td>'
            f'<td class="num">+{duration(env.timestamp - start)}</td><td class="num">{"" if gap is None else "+" + duration(gap)}</td>'
            f'<td>{e(env.sender)} → {e(env.recipient)}</td><td>{e(env.action.value)}</td><td>{e(env.capability)}</td>'
            f'<td class="num">{env.attempt}</td><td>{e(_step(cid, env.task_id))}</td>'
            f'<td>{f"<span class=code>{e(code)}</span>" if code else ""} {" ".join(marks)}</td>'
            f'<td><details><summary>{"error" if env.error else "payload"}</summary>{pretty(body)}'
            f'<p class="muted">id {copyable(env.id)}</p></details></td></tr>')
    return ('<div class="scroll"><table class="timeline"><thead><tr><th>pos</th><th>at</th><th>gap</th><th>from → to</th>'
            '<th>action</th><th>capability</th><th>attempt</th><th>step</th><th>notes</th><th>body</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def waterfall(events: Sequence[StoredEvent]) -> str:
    """The trace `ledgerbus trace show` draws, rebuilt from these envelopes: the conversation's span and one
    process span per attempt an agent handled (the send spans are instants, left out here)."""
    spans = [sp for sp in rebuild([ev.envelope for ev in events]) if sp.kind is not SpanKind.PRODUCER]
    spans = [sp for sp in spans if sp.start_time is not None and sp.end_time is not None]
    if not spans:
        return '<p class="empty">No spans yet at this position.</p>'
    t0 = min(sp.start_time or 0 for sp in spans)
    span_ns = max(max(sp.end_time or 0 for sp in spans) - t0, 1)
    bars = []
    for sp in sorted(spans, key=lambda sp: (sp.kind is not SpanKind.SERVER, sp.start_time or 0)):
        a, b = (sp.start_time or 0) - t0, (sp.end_time or 0) - t0
        left, width = 100 * a / span_ns, max(100 * (b - a) / span_ns, 0.5)
        attrs = sp.attributes or {}
        failed = sp.status.status_code is StatusCode.ERROR
        outcome = str(attrs.get(C.LB_OUTCOME) or ("ERROR " + str(attrs.get(C.ERROR_TYPE, "")) if failed else "OK"))
        cls = "s-failed" if failed else "s-degraded" if outcome == "DEGRADED" else "s-done"
        who = sp.resource.attributes.get("service.name", "")
        attempt = attrs.get(C.LB_ATTEMPT)
        label = f"{sp.name} · {who}" + (f" · attempt {attempt}" if attempt is not None else "")
        ms = (b - a) // 1_000_000
        bars.append(f'<li class="{"wf-root" if sp.kind is SpanKind.SERVER else "wf-child"}"><span class="wf-label" title="{e(label)}">{e(label)}</span>'
                    f'<span class="wf-track"><span class="wf-bar {cls}" style="left:{left:.2f}%;width:{width:.2f}%"'
                    f' title="{e(outcome)} {duration(ms)}"></span></span>'
                    f'<span class="wf-dur">{duration(ms)} {e(outcome.strip())}</span></li>')
    return f'<ul class="waterfall" aria-label="span waterfall">{"".join(bars)}</ul>'


def _diff(changes: Sequence[Change], a: int, b: int) -> str:
    if not changes:
        return f'<p>No change between positions {a} and {b}.</p>'
    items = "".join(f'<tr><td><code>{e(c.path)}</code></td><td>{e(c.before)}</td><td>{e(c.after)}</td></tr>'
                    for c in changes[:300])
    return (f'<table class="diff"><caption>from position {a} to {b}</caption><thead><tr><th>field</th>'
            f'<th>before</th><th>after</th></tr></thead><tbody>{items}</tbody></table>')


def render(cid: str, events: Sequence[StoredEvent], at: int | None, diff_from: int | None,
           actions: bool = False, live: bool = False, jaeger: str | None = None) -> str:
    positions = [ev.position for ev in events]
    last = positions[-1]
    at = last if at is None else at
    st = state_at(events, cid, Point(position=at))
    final = state_at(events, cid) if at != last else st
    idx = max([i for i, p in enumerate(positions) if p <= at] or [0])
    opts = "".join(f'<option value="{p}"{" selected" if p == at else ""}>{p} · {e(ev.envelope.action.value)} '
                   f'{e(ev.envelope.sender)}→{e(ev.envelope.recipient)}</option>' for p, ev in zip(positions, events))
    dopts = '<option value="">—</option>' + "".join(
        f'<option value="{p}"{" selected" if p == diff_from else ""}>{p}</option>' for p in positions)
    travel = f"""<form class="travel" method="get" action="/conversations/{e(cid)}">
<label for="slider">position <output id="at-out">{at}</output> ({idx + 1} of {len(positions)})</label>
<input id="slider" type="range" min="0" max="{len(positions) - 1}" value="{idx}" data-positions="{",".join(map(str, positions))}">
<label>at <select name="at" id="at">{opts}</select></label>
<label>diff from <select name="diff">{dopts}</select></label><button type="submit">Show</button>
<a href="/conversations/{e(cid)}">latest</a></form>"""
    diff = ""
    if diff_from is not None:
        before = state_at(events, cid, Point(position=diff_from))
        diff = f'<section><h2>Diff</h2>{_diff(diff_conversations(before, st), diff_from, at)}</section>'
    err = (f'<p class="err"><span class="code">{e(st.error.code)}</span> {e(st.error.message)}</p>'
           if st.error is not None else "")
    result = f'<details><summary>result</summary>{pretty(st.result)}</details>' if st.result is not None else ""
    deps = plannote.recorded(ev.envelope for ev in events)
    when_at = f' — <strong>as of position {at}</strong> (finally {badge(final.status.value)})' if at != last else ""
    body = f"""<nav class="crumbs"><a href="/">Conversations</a> / {copyable(cid)}</nav>
<h1>Conversation {badge(st.status.value)}<span class="sr">{e(cid)}</span></h1>
<p id="state" data-status="{e(st.status.value)}" data-at="{at}">{e(st.capability or "")} · started {when(st.started_at)} ·
{duration(st.duration_ms)} · {st.events} events · {len(st.subtasks)} steps{when_at}</p>{err}{result}
{travel}{_actions(cid, at, live, [(t.task_id, _step(cid, t.task_id)) for t in final.subtasks]) if actions else ""}{diff}
<section><h2>Plan</h2><p class="hint" id="plan-hint">{PLAN_HINTS[deps is not None]}</p>{plan_graph(st, deps)}</section>
<section><h2>Waterfall</h2><p class="hint">The spans rebuilt from the ledger, as <code>ledgerbus trace show</code> draws them.{_jaeger_link(jaeger, cid)}</p>{waterfall([ev for ev in events if ev.position <= at])}</section>
<section><h2>Timeline</h2><p class="hint"><span class="mark m-stall">stall</span> the orchestrator gave up on an attempt · <span class="mark m-backoff">backoff</span> a retry waits · <span class="mark m-gap">gap</span> over {GAP_MS} ms of silence · greyed: after the chosen position</p>
{timeline(events, at, cid)}</section>"""
    return layout(f"Conversation {cid}", body)


def _jaeger_link(base: str | None, cid: str) -> str:
    if base is None:
        return ""
    url = trace_url(base, cid)
    return (f' <a id="jaeger" href="{e(url)}" target="_blank" rel="noopener">Open the trace in Jaeger ↗</a>'
            ' <span class="muted">(the same ids: the live trace, or the one <code>ledgerbus trace export</code> sent)</span>')


def _actions(cid: str, at: int, live: bool, steps: Sequence[tuple[str, str]] = ()) -> str:
    token = '<label>action token<input type="password" name="token" autocomplete="off" required></label>'
    out = (f'<form class="actions" method="post" action="/conversations/{e(cid)}/export">{token}'
           '<button type="submit">Export JSONL</button><span class="hint">the token <code>ledgerbus ui --actions</code> printed</span></form>')
    if live:
        out += (f'<form class="actions fork" method="post" action="/conversations/{e(cid)}/fork">{token}'
                f'<input type="hidden" name="at" value="{at}"><label>payload to merge (JSON, optional)'
                '<input name="payload" placeholder=\'{"topic": "…"}\' size="30"></label>'
                f'<button type="submit">Fork at position {at}</button><span class="hint">re-runs live as a new '
                'conversation, as <code>ledgerbus fork</code> does</span></form>')
        opts = "".join(f'<option value="{e(tid)}">{e(label)}</option>' for tid, label in steps)
        out += (f'<form class="actions rerun" method="post" action="/conversations/{e(cid)}/re-execute">{token}'
                f'<label>step<select name="step">{opts}</select></label><label>at most N requests'
                '<input name="max_requests" type="number" min="1" value="3" required></label>'
                '<button type="submit">Re-execute step</button><span class="hint">runs it again live beside the '
                'recorded one, as <code>ledgerbus replay --mode re-execute --task</code> does</span></form>')
    return out


def link(cid: str, **q: object) -> str:
    return f"/conversations/{cid}?{urlencode({k: v for k, v in q.items() if v is not None})}"
