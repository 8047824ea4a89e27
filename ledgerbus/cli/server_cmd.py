"""`ledgerbus up` / `down` / `status`: the embedded server, the ledger it holds, and the recorder that
mirrors it into `<data-dir>/ledger.db`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from ledgerbus.cli.common import DataDirOption, JsonOption, UrlOption, console, run
from ledgerbus.cli.live import PrefixOption
from ledgerbus.cli.connopts import connection_options
from ledgerbus.cli.output import Column, Format, JsonlOption, choose, emit, table


def up(
    data_dir: Path = DataDirOption,
    port: int = typer.Option(0, "--port", "-p", min=0, max=65535,
                             help="port to listen on (0: the one the data directory kept, else a free one)"),
    prefix: str = PrefixOption,
    sync_interval: str = typer.Option(
        None, "--sync-interval", metavar="always|DURATION",
        help="when JetStream fsyncs: 'always' (the default: before every ack; survives kill -9 and power "
             "loss) or a duration such as 2m (faster; an OS crash or power loss can lose up to that much "
             "acknowledged ledger). Kept for the data directory, like the port"),
    as_json: bool = JsonOption,
) -> None:
    """Start the embedded nats-server for a data directory (or find the one already running), create the
    ledger, and keep it mirrored into <data-dir>/ledger.db by a supervised recorder.

    Both keep running after this command returns; `ledgerbus down` stops them. Other commands find the
    server through the data directory, so no --url is needed. A data directory keeps its port: after a
    crash, `up` brings the server back at the same URL and connected agents reconnect by themselves.
    A port taken by another process is an error (exit 2).

    Examples:

      ledgerbus up

      ledgerbus up --data-dir /var/lib/ledgerbus --port 4222 --json

      ledgerbus up --sync-interval 2m
    """
    run(_up(data_dir, port, prefix, sync_interval, as_json))


async def _up(data_dir: Path, port: int, prefix: str | None, sync_interval: str | None, as_json: bool) -> None:
    import asyncio

    from ledgerbus.bus.connection import Bus
    from ledgerbus.bus.server import SYNC_ALWAYS, EmbeddedServer, check_sync_interval
    from ledgerbus.cli import supervisor
    from ledgerbus.errors import ConfigError, ServerError

    asked = check_sync_interval(sync_interval) if sync_interval is not None else None
    server = EmbeddedServer.for_dir(data_dir, port=port)
    server.config.sync_interval = asked or server.saved_sync_interval() or SYNC_ALWAYS
    await asyncio.to_thread(server.start)
    sync = server.config.sync_interval
    if asked is not None and asked != sync:
        raise ConfigError(f"the nats-server of {data_dir} already runs with --sync-interval {sync}; "
                          f"stop it with `ledgerbus down`, then `ledgerbus up --sync-interval {asked}`")
    bus = await Bus.connect(server.url, prefix=prefix, name="ledgerbus-up")  # creates the LEDGER stream
    stream, effective_prefix = bus.subjects.stream, bus.subjects.prefix
    await bus.close()
    ledger = data_dir / "ledger.db"
    try:
        rec, rec_started = await asyncio.to_thread(supervisor.start, data_dir, server.url, ledger, effective_prefix)
    except ServerError as exc:
        raise ServerError(f"{exc}; nats-server runs at {server.url} without it (`ledgerbus down` stops it)") from None
    recorder = {"pid": supervisor.recording_pid(rec), "supervisorPid": rec["pid"], "ledger": str(ledger),
                "started": rec_started}
    out = {"url": server.url, "pid": server.pid, "dataDir": str(data_dir), "started": server.owned, "stream": stream,
           "syncInterval": sync, "recorder": recorder}
    if as_json:
        print(json.dumps(out))
        return
    verb = "started" if server.owned else "already running:"
    console.print(f"{verb} nats-server pid {server.pid} at [bold]{server.url}[/] (store {data_dir}, ledger {stream}, "
                  f"{_durability(sync)})", highlight=False)
    verb = "started" if rec_started else "already running:"
    console.print(f"{verb} recorder pid {recorder['pid']} mirroring into [bold]{ledger}[/] "
                  f"(supervised by pid {rec['pid']}, restarted if it dies)", highlight=False)
    console.print(f"use it from elsewhere with [bold]LEDGERBUS_NATS_URL={server.url}[/]; stop it with "
                  "[bold]ledgerbus down[/]", highlight=False)


def _durability(sync: str | None) -> str:
    if sync is None:
        return "sync interval unknown"
    if sync == "always":
        return "fsync before every ack"
    return f"[yellow]fsync every {sync}[/]: an OS crash or power loss can lose up to {sync} of acknowledged envelopes"


def down(data_dir: Path = DataDirOption, as_json: bool = JsonOption) -> None:
    """Stop the recorder and the embedded nats-server of a data directory (the ledger stays on disk).

    Examples:

      ledgerbus down

      ledgerbus down --data-dir /var/lib/ledgerbus
    """
    from ledgerbus.bus.server import EmbeddedServer
    from ledgerbus.cli import supervisor

    rec = supervisor.stop(data_dir)  # first, so that it mirrors up to the end and lets go of the server
    stopped = EmbeddedServer.for_dir(data_dir).stop_any()
    if as_json:
        print(json.dumps({"stopped": stopped, "recorderStopped": rec is not None, "dataDir": str(data_dir)}))
        return
    if rec is not None:
        console.print(f"stopped the recorder of {data_dir} (mirror {rec.get('ledger')})", highlight=False)
    if stopped:
        console.print(f"stopped the nats-server of {data_dir}", highlight=False)
    else:
        console.print(f"no server was running for {data_dir}", highlight=False)


@connection_options
def status(
    url: str = UrlOption,
    prefix: str = PrefixOption,
    data_dir: Path = DataDirOption,
    ledger: Path = typer.Option(None, "--ledger",
                                help="the SQLite mirror to compare with the stream (default: <data-dir>/ledger.db)"),
    as_json: bool = JsonOption,
    as_jsonl: bool = JsonlOption,
) -> None:
    """Show the server, the ledger, its SQLite mirror's lag, consumers' pending counts and the registered agents.

    The ledger stream's messages, bytes and positions; the mirror's position against the stream's last
    one, and its recorder; each durable consumer with its pending and unacknowledged counts; the live
    agent types from the directory. Exit status 2 when no server is reachable.

    Examples:

      ledgerbus status

      ledgerbus status --url nats://10.0.0.5:4222 --ledger cluster.db --json
    """
    run(_status(url, prefix, data_dir, ledger, choose(as_json, as_jsonl)))


async def _status(url: str | None, prefix: str | None, data_dir: Path, ledger: Path | None, fmt: Format) -> None:
    import asyncio

    from ledgerbus.bus.directory import Directory
    from ledgerbus.cli.live import connect, uses_embedded

    from ledgerbus.bus.server import EmbeddedServer

    embedded = EmbeddedServer.for_dir(data_dir).running() if uses_embedded(url) else None
    bus = await connect(url, data_dir, prefix=prefix)
    try:
        info = await bus.stream_info()
        consumers = await bus.consumers()
        agents = await Directory(bus).live_types()
        server_url = bus.url
    finally:
        await bus.close()
    out: dict[str, Any] = {
        "url": server_url,
        "embedded": {"pid": embedded.get("pid"), "dataDir": str(data_dir),
                     "syncInterval": EmbeddedServer.for_dir(data_dir).running_sync_interval()} if embedded else None,
        "stream": {"name": info.name, "messages": info.messages, "bytes": info.bytes,
                   "firstSeq": info.first_seq, "lastSeq": info.last_seq, "consumers": info.consumer_count},
        "consumers": [{"name": c.name, "pending": c.num_pending, "ackPending": c.num_ack_pending,
                       "redelivered": c.num_redelivered, "waiting": c.num_waiting}
                      for c in sorted(consumers, key=lambda c: c.name) if c.durable],
        # Ordered consumers of `tail`, `stalls` and friends come and go; count them, don't list them.
        "ephemeralConsumers": sum(1 for c in consumers if not c.durable),
        "agents": {name: len(insts) for name, insts in sorted(agents.items())},
        "mirror": await asyncio.to_thread(_mirror, ledger, data_dir, info.last_seq),
    }
    if fmt.machine:
        emit(fmt, out)
        return
    s = out["stream"]
    where = (f" (embedded, pid {embedded.get('pid')}, store {data_dir}, "
             f"{_durability(out['embedded']['syncInterval'])})" if embedded else "")
    console.print(f"server [bold]{server_url}[/]{where}   ledger [bold]{s['name']}[/]: {s['messages']} messages, "
                  f"{_size(s['bytes'])}, positions {s['firstSeq']}–{s['lastSeq']}", highlight=False)
    m = out["mirror"]
    if m is not None:
        rec = f"recorder pid {m['recorderPid']}" if m["recorderPid"] else "[yellow]no recorder running[/]"
        console.print(f"mirror [bold]{m['ledger']}[/]: position {m['position']} of {m['lastSeq']}, "
                      f"lag {m['lag']} ({rec})", highlight=False)
    columns = [Column("name", is_id=True), *(Column(c, right=True)
                                              for c in ("pending", "ack pending", "redelivered", "waiting pulls"))]
    rows = [[c["name"], str(c["pending"]), str(c["ackPending"]), str(c["redelivered"]), str(c["waiting"])]
            for c in out["consumers"]]
    console.print(table(console, columns, rows, title="consumers", drop=("waiting pulls", "redelivered")))
    if out["ephemeralConsumers"]:
        console.print(f"(and {out['ephemeralConsumers']} ephemeral reader(s))", highlight=False)
    if agents:
        console.print("agents: " + ", ".join(f"{n} ×{k}" for n, k in out["agents"].items()), highlight=False)
    else:
        console.print("agents: none registered", highlight=False)


def _mirror(ledger: Path | None, data_dir: Path, last_seq: int) -> dict[str, Any] | None:
    """How far the SQLite mirror is behind the stream: its checkpoint is the last position it holds."""
    from ledgerbus.eventstore.recorder_lock import lock_holder
    from ledgerbus.eventstore.sqlite import SQLiteEventStore

    path = ledger or data_dir / "ledger.db"
    if ledger is None and not path.exists():
        return None  # no mirror here, and none asked for
    store = SQLiteEventStore(path, readonly=True)  # StoreError (exit 2) for a missing or foreign file
    try:
        position = store.checkpoint()
    finally:
        store.close()
    return {"ledger": str(path), "position": position, "lastSeq": last_seq, "lag": max(last_seq - position, 0),
            "recorderPid": lock_holder(path)}


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover
