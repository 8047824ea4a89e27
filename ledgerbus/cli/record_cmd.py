"""`ledgerbus record`: mirror a server's ledger into a SQLite file until stopped.

`ledgerbus up` runs this command under a supervisor for its data directory; run it yourself for a
server that `up` did not start (a cluster, the compose deploy).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import typer

from ledgerbus.cli.common import DataDirOption, UrlOption, err_console, run
from ledgerbus.cli.connopts import connection_options
from ledgerbus.cli.live import PrefixOption

# Set by the supervisor to its pid: a recorder whose supervisor is gone stops, rather than hold the
# ledger's lock against the next one.
SUPERVISOR_ENV = "LEDGERBUS_RECORDER_SUPERVISOR"


@connection_options
def record(
    url: str = UrlOption,
    ledger: Path = typer.Option(None, "--ledger", help="SQLite ledger file to write (default: <data-dir>/ledger.db)"),
    prefix: str = PrefixOption,
    durable: str = typer.Option("recorder", "--durable",
                                help="the recorder's durable consumer: one name per recorder on a server"),
    data_dir: Path = DataDirOption,
) -> None:
    """Mirror a server's ledger into a SQLite file, following it until SIGINT/SIGTERM.

    Resumes where the file's checkpoint ends (nothing skipped, nothing stored twice) and survives server
    restarts. One recorder per file: a second one on the same file is refused (exit 2). `ledgerbus up`
    already runs one for its data directory; this is for servers it did not start.

    Examples:

      ledgerbus record --url nats://10.0.0.5:4222 --ledger cluster.db

      ledgerbus record --url nats://localhost:4222 --ledger mirror.db --durable recorder-2
    """
    run(_record(url, ledger or data_dir / "ledger.db", prefix, durable, data_dir))


async def _record(url: str | None, ledger: Path, prefix: str | None, durable: str, data_dir: Path) -> None:
    from ledgerbus.cli.agent_cmd import install_stop_signals
    from ledgerbus.cli.live import connect
    from ledgerbus.errors import ServerError
    from ledgerbus.eventstore.recorder import Recorder
    from ledgerbus.eventstore.recorder_lock import RecorderLock
    from ledgerbus.eventstore.sqlite import SQLiteEventStore

    lock = RecorderLock(ledger).acquire()  # before connecting: a second recorder fails at once
    try:
        store = SQLiteEventStore(ledger)
        try:
            bus = await connect(url, data_dir, prefix=prefix, name="ledgerbus-recorder")
            recorder = Recorder(bus, store, durable=durable)
            stop = install_stop_signals()
            try:
                try:
                    await recorder.start()
                except Exception as exc:
                    raise ServerError(f"the recorder could not start on {bus.url}: {exc or type(exc).__name__}") from None
                lock.announce()
                err_console.print(f"recording {bus.url} (ledger {bus.subjects.stream}) into [bold]{ledger}[/] from "
                                  f"position {recorder.recorded_seq + 1} — Ctrl-C or SIGTERM stops",
                                  highlight=False, soft_wrap=True)
                ended = await _first(stop.wait(), recorder.stopped(), _supervisor_gone())
                if ended == 1:
                    raise ServerError(f"the connection to {url or bus.url} closed; the recorder stopped")
            finally:
                await recorder.stop()
                await bus.close()
        finally:
            store.close()
    finally:
        lock.release()
    err_console.print(f"stopped: {ledger} holds the ledger up to position {recorder.recorded_seq}",
                      highlight=False, soft_wrap=True)


async def _first(*waits: Coroutine[Any, Any, object]) -> int:
    """Index of the first of these coroutines to finish; the others are cancelled."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    first = next(t for t in tasks if t in done)
    return tasks.index(first)


async def _supervisor_gone() -> None:
    """Returns when the supervisor that started us is gone (never, when no supervisor did)."""
    raw = os.environ.get(SUPERVISOR_ENV)
    if not raw or not raw.isdigit():
        await asyncio.Event().wait()
        return
    supervisor = int(raw)
    while os.getppid() == supervisor:  # a dead parent's children are handed to another
        await asyncio.sleep(1.0)
