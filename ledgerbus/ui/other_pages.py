"""Agents, Stalls & dead letters, Integrity: one question each, answered from the ledger."""

from __future__ import annotations

from collections.abc import Sequence

from ledgerbus.eventstore.base import Rejected
from ledgerbus.orchestrator.stalls import Stall
from ledgerbus.ui.html import copyable, duration, e, layout
from ledgerbus.ui.index import DeadLetter
from ledgerbus.ui.tally import AgentRow
from ledgerbus.ui.verifier import Status
from ledgerbus.ui.summary import in_words


def _link(cid: str, position: int | None = None) -> str:
    href = f"/conversations/{cid}" + (f"?at={position}" if position is not None else "")
    return copyable(cid, short=13, href=href)


def _counting(upto: int, last: int) -> str:
    """A note (and a reload a second later) while the counts do not cover the ledger yet."""
    if upto >= last:
        return ""
    share = 100 * upto / last if last else 100
    return (f'<p class="hint" id="counting" role="status">Counting: up to position {upto:,} of {last:,} ({share:.0f} %); '
            'this page looks again in a second.</p><meta http-equiv="refresh" content="1">')


def agents(rows: Sequence[AgentRow], upto: int = 0, last: int = 0) -> str:
    body = "".join(
        f'<tr data-agent="{e(n)}"><td><a href="/?agent={e(n)}">{e(n)}</a></td><td class="num">{req}</td>'
        f'<td class="num">{ack}</td><td class="num">{resp}</td><td class="num">{err}</td>'
        f'<td class="num">{"—" if not req else f"{100 * err / req:.0f} %"}</td></tr>'
        for n, req, ack, resp, err in rows)
    return layout("Agents", f"""<h1>Agents</h1><p class="hint">Every address that took part in this ledger: what was
asked of it and how it answered. Follow a name for its conversations.</p>{_counting(upto, last)}
<div class="scroll"><table class="agents"><thead><tr><th>agent</th><th>requests to it</th><th>acks</th><th>responses</th>
<th>errors sent</th><th>errors per request</th></tr></thead><tbody>{body}</tbody></table></div>""", nav="agents")


def _letters(letters: Sequence[DeadLetter], redrive: bool) -> str:
    if not letters:
        return '<p class="empty" id="no-letters">None: no request was given up on after MaxDeliver deliveries.</p>'
    token = '<input type="password" name="token" autocomplete="off" required aria-label="action token" placeholder="token">'

    def action(d: DeadLetter) -> str:
        if d.redriven_by is not None:
            return f're-driven as {copyable(d.redriven_by, short=13)}'
        if not redrive:
            return f'<code>ledgerbus deadletters redrive {e(d.id)}</code>'
        return (f'<form class="actions redrive" method="post" action="/deadletters/{e(d.id)}/redrive">{token}'
                '<button type="submit">Re-drive</button></form>')

    body = "".join(
        f'<tr data-letter="{e(d.id)}" data-position="{d.position}"><td class="num"><a href="/conversations/{e(d.conversation_id)}?at={d.position}">{d.position}</a></td>'
        f'<td>{copyable(d.id)}</td><td>{_link(d.conversation_id, d.position)}</td><td>{e(d.task_id.split("_", 1)[1] if "_" in d.task_id else "(root task)")}</td>'
        f'<td>{e(d.capability)}</td><td>{e(d.agent)}</td><td class="num">{"—" if d.deliveries is None else d.deliveries}</td>'
        f'<td class="redriven">{action(d)}</td></tr>' for d in letters)
    return (f'<div class="scroll"><table class="letters"><thead><tr><th>pos</th><th>letter</th><th>conversation</th><th>task</th>'
            f'<th>capability</th><th>agent</th><th>deliveries</th><th>re-drive</th></tr></thead><tbody>{body}</tbody></table></div>')


def stalls(now: Sequence[Stall], past: Sequence[tuple[int, str, str, str, str, int]], rejects: Sequence[Rejected],
           letters: Sequence[DeadLetter] = (), redrive: bool = False) -> str:
    live = "".join(
        f'<tr class="stall"><td>{_link(s.conversation_id)}</td><td>{e(s.task_id.rsplit("_", 1)[-1])}</td><td>{e(s.agent)}</td>'
        f'<td><span class="code">{e(s.code)}</span> {e(in_words(s.code))}</td><td class="num">{duration(s.silent_ms)}</td>'
        f'<td class="num">{s.attempt}</td></tr>' for s in now)
    live_t = (f'<div class="scroll"><table class="stalls-now"><thead><tr><th>conversation</th><th>step</th><th>agent</th><th>what</th>'
              f'<th>silent for</th><th>attempt</th></tr></thead><tbody>{live}</tbody></table></div>'
              if now else '<p class="empty" id="no-stalls">No running task is past its limits (failure-policy defaults).</p>')
    hist = "".join(
        f'<tr data-position="{pos}"><td class="num"><a href="/conversations/{e(cid)}?at={pos}">{pos}</a></td>'
        f'<td>{_link(cid, pos)}</td><td>{e((tid or "").rsplit("_", 1)[-1])}</td><td>{e(agent)}</td>'
        f'<td><span class="code">{e(code)}</span> {e(in_words(code))}</td><td class="num">{attempt}</td></tr>'
        for pos, cid, tid, agent, code, attempt in past)
    hist_t = (f'<div class="scroll"><table class="verdicts"><thead><tr><th>pos</th><th>conversation</th><th>step</th>'
              f'<th>from → to</th><th>code</th><th>attempt</th></tr></thead><tbody>{hist}</tbody></table></div>'
              if past else '<p class="empty">None recorded.</p>')
    rej = "".join(f'<tr><td class="num">{r.position}</td><td><code>{e(r.subject)}</code></td><td>{e(r.code)}</td>'
                  f'<td>{e(r.reason)}</td></tr>' for r in rejects[-200:])
    rej_t = (f'<div class="scroll"><table><thead><tr><th>pos</th><th>subject</th><th>code</th><th>reason</th></tr></thead>'
             f'<tbody>{rej}</tbody></table></div>' if rejects else '<p class="empty">None.</p>')
    return layout("Stalls & dead letters", f"""<h1>Stalls &amp; dead letters</h1>
<h2>Stalled now</h2><p class="hint">Running tasks past the default receipt, stall or timeout windows, as `ledgerbus stalls` computes them.</p>{live_t}
<h2>Dead letters</h2><p class="hint">Requests JetStream delivered MaxDeliver times without an acknowledgement, as `ledgerbus deadletters list` shows them{"; re-drive sends one again as the next attempt of its task (the token `ledgerbus ui --actions` printed)" if redrive else ""}.</p>{_letters(letters, redrive)}
<h2>Recorded verdicts</h2><p class="hint">The newest stalls, timeouts, missing receipts, open breakers and dead letters in the ledger: the orchestrator's verdicts, and the agents' own.</p>{hist_t}
<h2>Rejected messages</h2><p class="hint">Ledger messages that were not valid envelopes: kept, never dropped.</p>{rej_t}""", nav="stalls")


def integrity(status: Status, last: int, now: float) -> str:
    report = status.last.report if status.last is not None else None
    running = ""
    if status.running_since is not None:
        what = "Verifying" if report is None else "Verifying again, the ledger has grown:"
        running = (f'<p class="hint" id="verifying" role="status"><span class="badge s-running">● {what}</span> '
                   f'every position up to {status.running_upto or last:,}, for {now - status.running_since:.0f} s so far; '
                   'this page looks again every two seconds.</p><meta http-equiv="refresh" content="2">')
    failed = f'<p class="err" id="verify-error">The last run failed: {e(status.error)}</p>' if status.error else ""
    if report is None or status.last is None:
        return layout("Integrity", f"""<h1>Integrity</h1><p class="hint">`ledgerbus verify` on this file: every
conversation checked against its hash chain.</p>{running}{failed}""", nav="integrity")
    v = status.last
    verdict = ('<p class="ok" id="verdict"><span class="badge s-done">✔ INTACT</span> every conversation\'s hash chain '
               'checks out</p>' if report.ok else
               f'<p id="verdict"><span class="badge s-failed">✖ {len(report.issues)} FINDINGS</span></p>')
    rows = "".join(
        f'<tr data-position="{i.position or ""}"><td class="num">{"—" if i.position is None else i.position}</td>'
        f'<td>{e(i.kind.value)}</td><td>{_link(i.conversation_id, i.position) if i.conversation_id else ""}</td>'
        f'<td>{e(i.message)}</td></tr>' for i in report.issues)
    table = (f'<div class="scroll"><table class="findings"><thead><tr><th>pos</th><th>finding</th><th>conversation</th>'
             f'<th>what</th></tr></thead><tbody>{rows}</tbody></table></div>' if rows else "")
    return layout("Integrity", f"""<h1>Integrity</h1><p class="hint">`ledgerbus verify` on this file: {report.events} events
in {report.conversations} conversations, each checked against its hash chain — up to position {v.upto:,}, verified in
{v.took_s:.1f} s, {now - v.finished_at:.0f} s ago.</p>{running}{failed}{verdict}{table}""", nav="integrity")
