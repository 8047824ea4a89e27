"""`ledgerbus ui`: the web view of a ledger file. The web stack is imported only when the command runs."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import typer

from ledgerbus.cli.common import DataDirOption, fail, run
from ledgerbus.cli.connopts import connection_options
from ledgerbus.cli.live import PrefixOption
from ledgerbus.cli.pipeline_specs import DecomposerOption, PoliciesOption, pipeline_or_fail


@connection_options
def ui(
    ledger: Path = typer.Argument(None, metavar="LEDGER", show_default=False,
                                  help="SQLite ledger file (default: <data-dir>/ledger.db)"),
    url: str = typer.Option(None, "--url", help="follow the live LEDGER of this NATS server instead of a file "
                                                "(also without --url when --context names a context with a url)"),
    prefix: str = PrefixOption,
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="TCP port to listen on"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind (the default is this machine only)"),
    decomposer: str = DecomposerOption,
    policies: str = PoliciesOption,
    actions: bool = typer.Option(False, "--actions", help="allow actions (export JSONL; with --url: fork, re-execute, "
                                                          "re-drive a dead letter), each with a token printed here"),
    jaeger_url: str = typer.Option(None, "--jaeger-url", envvar=["LEDGERBUS_JAEGER_URL", "LEDGERBUS_JAEGER_UI"],
                                   help="Jaeger UI that conversation pages link their trace to (default: the host of "
                                        "OTEL_EXPORTER_OTLP_ENDPOINT at port 16686 when set; else no link)"),
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

      ledgerbus ui --url nats://10.0.0.5:4222 --user alice --password s3cret --actions
    """
    from ledgerbus.cli import connopts

    live = bool(url) or connopts.current().options.context is not None
    if live and ledger is not None:
        fail("give a LEDGER file or --url (or --context), not both")
    path = ledger if ledger is not None else data_dir / "ledger.db"
    try:
        import uvicorn

        from ledgerbus.ui.actions import new_token
        from ledgerbus.ui.app import create_app
        from ledgerbus.ui.jaeger import jaeger_base
    except ImportError as exc:
        fail(f"the web UI needs its extra: pip install 'ledgerbus[ui]' ({exc.name} is missing)")
    from ledgerbus.errors import StoreError

    from ledgerbus.ui.mirror import LiveMirror

    token = new_token() if actions else None
    mirror = None
    if live:
        # The stream mirrored by the recorder into a private file, removed at exit. The connection is the one
        # every server command makes (credentials, TLS, context); tried once here, so that a server that is
        # not there or refuses us is one line, exit 2, before anything is served.
        from ledgerbus.cli.live import connect

        async def connect_bus() -> Any:
            return await connect(url, data_dir, prefix=prefix, name="ledgerbus-ui")

        async def check() -> str:
            bus = await connect_bus()
            await bus.close()
            return connopts.current().url

        url = run(check())
        # Its reconnect warnings would be lines of their own; a lost server shows in the page as a stale list.
        logging.getLogger("ledgerbus.bus").setLevel(logging.ERROR)
        tmp = tempfile.TemporaryDirectory(prefix="ledgerbus-ui-")
        path = Path(tmp.name) / "mirror.db"
        mirror = LiveMirror(connect_bus, path)
    chosen = pipeline_or_fail(decomposer, policies)

    def pipeline(events: Any) -> tuple[Any, Any]:
        from ledgerbus.cli.replay_modes import decomposer_for

        return decomposer_for(list(events), chosen[0]), chosen[1]

    try:
        app = create_app(path, token=token, mirror=mirror, pipeline=pipeline,
                         jaeger=jaeger_base(jaeger_url, os.environ))
    except StoreError as exc:
        fail(str(exc), 2)
    if token is not None:
        print(f"actions on; their token: {token}", flush=True)
    source = f"following {url}" if url else f"ledger {path}"
    print(f"ledgerbus ui: http://{host}:{port}/ ({source}); Ctrl-C stops it", flush=True)
    # Live pages hold a stream open for as long as they are shown: a stop must not wait for them to close.
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=1)
