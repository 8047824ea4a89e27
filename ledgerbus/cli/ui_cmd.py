"""`ledgerbus ui`: the web view of a ledger file. The web stack is imported only when the command runs."""

from __future__ import annotations

from pathlib import Path

import typer

from ledgerbus.cli.common import DataDirOption, fail


def ui(
    ledger: Path = typer.Argument(None, metavar="LEDGER", show_default=False,
                                  help="SQLite ledger file (default: <data-dir>/ledger.db)"),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="TCP port to listen on"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind (the default is this machine only)"),
    actions: bool = typer.Option(False, "--actions", help="allow actions (export JSONL), each with a token printed here"),
    data_dir: Path = DataDirOption,
) -> None:
    """Serve a web view of a ledger: conversations (live), each one's plan, timeline and time travel.

    Reads the SQLite file the recorder writes, read-only, and follows it as it grows: a conversation
    appears in the list as soon as its REQUEST is recorded. Everything is served from the installed
    package; nothing is fetched from the internet.

    Examples:

      ledgerbus ui

      ledgerbus ui .ledgerbus/ledger.db --port 8080

      ledgerbus ui --actions
    """
    path = ledger if ledger is not None else data_dir / "ledger.db"
    try:
        import uvicorn

        from ledgerbus.ui.actions import new_token
        from ledgerbus.ui.app import create_app
    except ImportError as exc:
        fail(f"the web UI needs its extra: pip install 'ledgerbus[ui]' ({exc.name} is missing)")
    from ledgerbus.errors import StoreError

    token = new_token() if actions else None
    try:
        app = create_app(path, token=token)
    except StoreError as exc:
        fail(str(exc), 2)
    if token is not None:
        print(f"actions on; their token: {token}", flush=True)
    print(f"ledgerbus ui: http://{host}:{port}/ (ledger {path}); Ctrl-C stops it", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
