"""The Agents page: per agent type its counts, live instances, capabilities and their schemas, load, breaker,
recent errors and stalls. Rendering only: app.py gathers what it shows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from ledgerbus.orchestrator.breaker import BreakerState
from ledgerbus.schemas.directory import InstanceInfo
from ledgerbus.ui.agentview import AgentView, Breaker, Mark
from ledgerbus.ui.html import copyable, duration, e, layout, pretty, when
from ledgerbus.ui.summary import in_words
from ledgerbus.ui.tally import AgentRow


class Schema(NamedTuple):
    input: dict[str, Any]
    output: dict[str, Any]
    source: str  # where it comes from, in words


class Facts(NamedTuple):
    """Everything the page shows beyond the counts."""

    capabilities: Mapping[str, Sequence[str]]  # agent type -> capabilities asked of it, or its instances announce
    schemas: Mapping[str, Schema]  # capability -> its schemas, when known
    views: Mapping[str, AgentView]  # agent type -> breaker, recent errors and stalls (agentview.replay)
    load: Mapping[str, int]  # agent type -> tasks in flight, from the fold
    instances: Mapping[str, Sequence[InstanceInfo]] | None  # None: a file ledger, the directory is not known
    window: int  # positions replayed for the breakers
    now_ms: int


_WORDS = {BreakerState.CLOSED: "closed", BreakerState.OPEN: "OPEN", BreakerState.HALF_OPEN: "half-open"}
_SHAPES = {BreakerState.CLOSED: "●", BreakerState.OPEN: "✖", BreakerState.HALF_OPEN: "◐"}


def breaker_badge(b: Breaker) -> str:
    """The breaker's state in a word and a shape (not colour alone), and when it lets a probe through."""
    css = {BreakerState.CLOSED: "s-done", BreakerState.OPEN: "s-failed", BreakerState.HALF_OPEN: "s-stalled"}[b.state]
    more = ""
    if b.state is BreakerState.OPEN:
        more = (f" probe in {b.retry_after_s:.0f} s" if b.retry_after_s > 0 else
                " cool-down over: the next request is a probe")
    elif b.state is BreakerState.CLOSED and b.failures:
        more = f" {b.failures} failure{'s' if b.failures > 1 else ''} in a row"
    return (f'<span class="badge {css}" title="breaker"><span aria-hidden="true">{_SHAPES[b.state]}</span> '
            f'{_WORDS[b.state]}</span><span class="more">{e(more)}</span>')


def breaker_cell(b: Breaker | None) -> str:
    if b is None:
        return '<td class="breaker" data-state="">—</td>'
    return f'<td class="breaker" data-state="{b.state.value}">{breaker_badge(b)}</td>'


def _instances_cell(name: str, facts: Facts) -> str:
    if facts.instances is None:
        return '<td class="instances num">not known from a file</td>'
    return f'<td class="instances num">{len(facts.instances.get(name, ()))}</td>'


def _marks(marks: Sequence[Mark], what: str) -> str:
    if not marks:
        return f'<p class="empty">No {what} in the last positions replayed.</p>'
    items = "".join(
        f'<li data-position="{m.position}"><a href="/conversations/{e(m.conversation_id)}?at={m.position}">pos {m.position}</a> '
        f'<span class="code">{e(m.code)}</span> {e(in_words(m.code))} in {copyable(m.conversation_id, short=13, href=f"/conversations/{m.conversation_id}")}</li>'
        for m in marks)
    return f'<ul class="marks {what.split()[-1]}">{items}</ul>'


def _schema(cap: str, s: Schema | None) -> str:
    if s is None:
        return (f'<li data-capability="{e(cap)}"><code>{e(cap)}</code> <span class="hint">no schema known: no live '
                'instance announces it and the package\'s registry does not hold it</span></li>')
    return (f'<li data-capability="{e(cap)}"><details class="schema"><summary><code>{e(cap)}</code> '
            f'<span class="hint">schemas {e(s.source)}</span></summary><h4>input</h4>{pretty(s.input)}'
            f'<h4>output</h4>{pretty(s.output)}</details></li>')


def _instances(name: str, facts: Facts) -> str:
    if facts.instances is None:
        return ('<p class="hint">Live instances: not known from a file (the agent directory lives in the server\'s KV; '
                'start the UI with <code>--url</code> to see it).</p>')
    found = facts.instances.get(name, ())
    if not found:
        return '<p class="empty">No live instance in the agent directory.</p>'
    rows = "".join(
        f'<tr data-instance="{e(i.instance)}"><td class="nowrap">{copyable(i.instance, short=22)}</td><td class="num">{i.inflight} / {i.concurrency}</td>'
        f'<td class="num">{i.handled}</td><td>{when(i.started_at)}</td><td class="num">{duration(max(facts.now_ms - i.seen_at, 0))} ago</td>'
        f'<td>{e(i.pull_error) if i.pull_error else "ok"}{f", {i.abandoned} abandoned" if i.abandoned else ""}</td></tr>'
        for i in found)
    return (f'<div class="scroll"><table class="instances"><thead><tr><th>instance</th><th>in flight / concurrency</th>'
            f'<th>handled</th><th>started</th><th>last seen</th><th>health</th></tr></thead><tbody>{rows}</tbody></table></div>')


def _section(name: str, facts: Facts) -> str:
    view = facts.views.get(name)
    caps = facts.capabilities.get(name, ())
    schemas = "".join(_schema(c, facts.schemas.get(c)) for c in caps) or '<li class="empty">none seen</li>'
    badge = f'<span class="hint">breaker</span> {breaker_badge(view.breaker)}' if view else ""
    return (f'<section class="agent" id="agent-{e(name)}" data-agent="{e(name)}"><h2>{e(name)} {badge}</h2>'
            f'<h3>Instances</h3>{_instances(name, facts)}'
            f'<h3>Capabilities</h3><ul class="capabilities">{schemas}</ul>'
            f'<h3>Recent errors</h3>{_marks(view.errors if view else (), "errors")}'
            f'<h3>Recent stalls</h3>{_marks(view.stalls if view else (), "recent stalls")}</section>')


def _row(n: str, counts: tuple[int, int, int, int], facts: Facts, detailed: bool) -> str:
    req, ack, resp, err = counts
    cells = (f'{_instances_cell(n, facts)}<td class="num load">{facts.load.get(n, 0)}</td>'
             f'{breaker_cell(facts.views[n].breaker if n in facts.views else None)}'
             if detailed else "<td></td><td></td><td></td>")
    return (f'<tr data-agent="{e(n)}"><td><a href="/?agent={e(n)}">{e(n)}</a></td><td class="num">{req}</td>'
            f'<td class="num">{ack}</td><td class="num">{resp}</td><td class="num">{err}</td>'
            f'<td class="num">{"—" if not req else f"{100 * err / req:.0f} %"}</td>{cells}</tr>')


def render(rows: Sequence[AgentRow], facts: Facts, counting: str = "") -> str:
    live = facts.instances or {}
    # Agent types: what was asked of something, or is in the directory; the rest (clients) only sent.
    types = [r[0] for r in rows if r[1] or r[0] in facts.views or r[0] in live]
    named = {r[0] for r in rows}
    types += sorted(n for n in live if n not in named)  # live, never asked anything yet
    table = "".join(_row(r[0], r[1:], facts, r[0] in types) for r in rows)  # type: ignore[arg-type]
    table += "".join(_row(n, (0, 0, 0, 0), facts, True) for n in types if n not in named)
    sections = "".join(_section(n, facts) for n in types)
    source = ("from the agent directory (KV), as <code>ledgerbus agents</code> lists them" if facts.instances is not None
              else "not known from a file")
    return layout("Agents", f"""<h1>Agents</h1><p class="hint">Every address that took part in this ledger: what was
asked of it and how it answered. Follow a name for its conversations; each agent type's instances,
capabilities with their schemas, recent errors and stalls follow the table. Live instances: {source}. Load: steps in
flight now, from the fold of the running conversations. Breaker: rebuilt from the ledger — the orchestrator's
breaker policy fed with each agent type's outcomes of the last {facts.window:,} positions, in position order — as
the orchestrator would see it now.</p>{counting}
<div class="scroll"><table class="agents"><thead><tr><th>agent</th><th>requests to it</th><th>acks</th><th>responses</th>
<th>errors sent</th><th>errors per request</th><th>live instances</th><th>load</th><th>breaker</th></tr></thead>
<tbody>{table}</tbody></table></div><div class="agent-cards">{sections}</div>""", nav="agents")
