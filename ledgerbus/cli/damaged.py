"""How every ledger command says it skipped events that no longer decode: one warning line each, on stderr."""

from __future__ import annotations

from collections.abc import Sequence

from rich.markup import escape

from ledgerbus.eventstore.base import Damaged

#: Beyond this many, the rest are counted: `ledgerbus verify` lists them all.
SHOWN = 20


def warn_damaged(damaged: Sequence[Damaged]) -> None:
    from ledgerbus.cli.common import err_console

    for d in damaged[:SHOWN]:
        err_console.print(f"[yellow]warning:[/] {escape(d.describe())}", highlight=False, soft_wrap=True)
    if len(damaged) > SHOWN:
        err_console.print(f"[yellow]warning:[/] {len(damaged) - SHOWN} more damaged events skipped", highlight=False)
