"""`ledgerbus ui`: the web view of a ledger file. The web stack is imported only when the command runs."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path
from typing import Any

import typer

from ledgerbus.cli.common import DataDirOption, fail
from ledgerbus.cli.live import PrefixOption
from ledgerbus.cli.pipeline_specs import DecomposerOption, PoliciesOption, pipeline_or_fail


def _reachable_or_fail(url: str) -> None:
    """The client library retries a dead address noisily: probe it first, so that it is one line, exit 2."""
    from urllib.parse import urlsplit

    from ledgerbus.bus.server import port_open

    try:
        parts = urlsplit(url if "://" in url else f"nats://{url}")
        host, port = parts.hostname or "127.0.0.1", parts.port or 4222
    except ValueError as exc:
        fail(f"bad NATS URL {url!r}: {exc}")
    if not port_open(host, port, 2.0):
        fail(f"no NATS server reachable at {url}", 2)
    # Its reconnect warnings would be lines of their own; a lost server shows in the page as a stale list.
    logging.getLogger("ledgerbus.bus").setLevel(logging.ERROR)


def ui(
    ledger: Path = typer.Argument(None, metavar="LEDGER", show_default=False,
                                  help="SQLite ledger file (default: <data-dir>/ledger.db)"),
    url: str = typer.Option(None, "--url", help="follow the live LEDGER of this NATS server instead of a file"),
    prefix: str = PrefixOption,
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="TCP port to listen on"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind (the default is this machine only)"),
    decomposer: str = DecomposerOption,
    policies: str = PoliciesOption,
    actions: bool = typer.Option(False, "--actions", help="allow actions (export JSONL; fork, with --url), each with a token printed here"),
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

      ledgerbus ui --url nats://127.0.0.1:4222
    """
    if url and ledger is not None:
        fail("give a LEDGER file or --url, not both")
    path = ledger if ledger is not None else data_dir / "ledger.db"
    try:
        import uvicorn

        from ledgerbus.ui.actions import new_token
        from ledgerbus.ui.app import create_app
    except ImportError as exc:
        fail(f"the web UI needs its extra: pip install 'ledgerbus[ui]' ({exc.name} is missing)")
    from ledgerbus.errors import StoreError

    from ledgerbus.errors import ServerError

    from ledgerbus.ui.mirror import LiveMirror

    token = new_token() if actions else None
    mirror = None
    if url:
        # The stream mirrored by the recorder into a private file, removed at exit.
        _reachable_or_fail(url)
        try:
            asyncio.run(LiveMirror.check(url, prefix))
        except ServerError as exc:
            fail(str(exc), 2)
        tmp = tempfile.TemporaryDirectory(prefix="ledgerbus-ui-")
        path = Path(tmp.name) / "mirror.db"
        mirror = LiveMirror(url, prefix, path)
    chosen = pipeline_or_fail(decomposer, policies)

    def pipeline(events: Any) -> tuple[Any, Any]:
        from ledgerbus.cli.replay_modes import decomposer_for

        return decomposer_for(list(events), chosen[0]), chosen[1]

    try:
        app = create_app(path, token=token, mirror=mirror, pipeline=pipeline)
    except StoreError as exc:
        fail(str(exc), 2)
    if token is not None:
        print(f"actions on; their token: {token}", flush=True)
    source = f"following {url}" if url else f"ledger {path}"
    print(f"ledgerbus ui: http://{host}:{port}/ ({source}); Ctrl-C stops it", flush=True)
    # Live pages hold a stream open for as long as they are shown: a stop must not wait for them to close.
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=1)
