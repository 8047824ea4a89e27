"""Terminal rendering of timelines and folded state (rich), and their JSON forms."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

from ledgerbus.eventstore.base import StoredEvent
from ledgerbus.eventstore.fold import ConversationState, TaskState

ACTION_STYLE = {"REQUEST": "cyan", "ACK": "green", "PROGRESS": "blue", "RESPONSE": "bold green", "ERROR": "bold red"}
STATUS_STYLE = {"DONE": "green", "DEGRADED": "yellow", "FAILED": "red", "RUNNING": "cyan", "STALLED": "magenta",
                "TIMED_OUT": "red", "SENT": "cyan", "ACKED": "blue", "PENDING": "dim"}


def short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def task_label(task_id: str, conversation_id: str) -> str:
    if task_id == conversation_id:
        return "(root)"
    prefix = conversation_id + "_"
    return task_id[len(prefix):] if task_id.startswith(prefix) else task_id  # never a cut id


def detail(ev: StoredEvent) -> str:
    e = ev.envelope
    if e.error is not None:
        return f"{e.error.code}: {e.error.message}"
    if e.action.value == "ACK":
        return short(e.payload.get("instance", ""), 40)
    if e.action.value == "REQUEST" or not e.payload:
        return short(e.payload)
    return f"{e.capability} → " + short(e.payload)


def _task_row(t: TaskState, conv: str) -> list[str]:
    what = ""
    if t.error is not None:
        what = f"{t.error.code}: {t.error.message}"
    elif t.result is not None:
        what = short(t.result, 50)
    dur = str(t.duration_ms) if t.duration_ms is not None else "—"
    status = t.status.value + (" (fallback)" if t.fallback else "")
    return [task_label(t.task_id, conv), t.agent, t.capability,
            f"[{STATUS_STYLE.get(t.status.value, '')}]{status}[/]", str(t.attempts), dur, what]


def state_table(st: ConversationState) -> Table:
    dur = f"{st.duration_ms} ms" if st.duration_ms is not None else "running"
    title = (f"[{STATUS_STYLE.get(st.status.value, '')}]{st.status.value}[/] {st.capability} from {st.requester}"
             f" — {st.events} events — {dur}\nconversation {st.conversation_id}")
    table = Table(title=title, header_style="bold")
    for col, width in (("task", 10), ("agent", 10), ("capability", 15), ("status", 8), ("tries", 5), ("ms", 4)):
        table.add_column(col, no_wrap=True, min_width=width)
    table.add_column("result / error", no_wrap=True, overflow="ellipsis", max_width=60)
    for t in st.tasks.values():
        table.add_row(*_task_row(t, st.conversation_id))
    return table


def state_json(st: ConversationState) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(st)
    if not out.get("ignored"):
        out.pop("ignored", None)  # shown only when the fold refused something, as before it existed
    out["durationMs"] = st.duration_ms
    return out


def print_json(console: Console, data: Any) -> None:
    console.print_json(json.dumps(data, default=str))
