"""Progress bars appear on a terminal only, and only for work long enough to need one."""

import io

from rich.console import Console

from ledgerbus.cli import progress


def test_no_bar_when_not_a_terminal(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(progress, "err_console", Console(file=out, force_terminal=False))
    with progress.bar("reading") as tick:
        for i in range(5000):
            tick(i + 1, 5000)
    assert out.getvalue() == ""


def test_bar_on_a_terminal_for_long_work(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(progress, "err_console", Console(file=out, force_terminal=True, width=100))
    with progress.bar("reading the ledger") as tick:
        for i in range(0, 5000, 500):
            tick(i + 500, 5000)
    assert "reading the ledger" in out.getvalue() and "5000/5000" in out.getvalue()


def test_no_bar_for_short_work_even_on_a_terminal(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(progress, "err_console", Console(file=out, force_terminal=True, width=100))
    with progress.bar("reading the ledger") as tick:
        for i in range(10):
            tick(i + 1, 10)
    assert out.getvalue() == ""
