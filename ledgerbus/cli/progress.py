"""Progress bars for long work, on a terminal only: piped output and CI logs stay clean."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ledgerbus.cli.common import err_console

#: below this many items the work is over before a bar would be worth drawing
THRESHOLD = 2000

Tick = Callable[[int, int], None]  # (done, total)


@contextmanager
def bar(description: str, *, enabled: bool | None = None) -> Iterator[Tick]:
    """`with bar("reading the ledger") as tick: … tick(done, total)` — a no-op unless stderr is a terminal."""
    show = err_console.is_terminal if enabled is None else enabled
    if not show:
        yield lambda done, total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=err_console, transient=True)
    task = progress.add_task(description, total=None)
    started = False

    def tick(done: int, total: int) -> None:
        nonlocal started
        if not started:
            if total < THRESHOLD:
                return  # short work: no bar at all, not even a flash of one
            progress.start()
            started = True
        progress.update(task, completed=done, total=total)

    try:
        yield tick
    finally:
        if started:
            progress.stop()
