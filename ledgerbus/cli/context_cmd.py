"""`ledgerbus context`: saved connection profiles (server, prefix, credentials), like `nats context`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import msgspec
import typer

from ledgerbus.cli.common import JsonOption, console, fail
from ledgerbus.cli.contexts import PATH_FIELDS, Context, ContextStore, absolute, merged
from ledgerbus.errors import ConfigError

app = typer.Typer(help="Saved connections: server URL, prefix and credentials under a name; select one to use it "
                       "by default.", no_args_is_help=True)

NameArg = typer.Argument(..., help="the context's name")


def _store() -> ContextStore:
    return ContextStore()


def _shown(ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(ctx)
    if ctx.password is not None:
        out["password"] = "***"  # in the file (mode 0600), not on a screen
    return out


def _identity(ctx: Context) -> str:
    if ctx.nkey:
        return f"nkey {ctx.nkey}"
    if ctx.creds:
        return f"creds {ctx.creds}"
    if ctx.user:
        return f"user {ctx.user}" + (" (password)" if ctx.password is not None else "")
    return ""


@app.command()
def save(
    name: str = NameArg,
    url: str = typer.Option(None, "--url", help="NATS server URL"),
    prefix: str = typer.Option(None, "--prefix", help="subject namespace of the deployment"),
    creds: Path = typer.Option(None, "--creds", help="NATS credentials file"),
    nkey: Path = typer.Option(None, "--nkey", help="nkey seed file"),
    user: str = typer.Option(None, "--user", help="user name, token, or the deployment user to connect as"),
    password: str = typer.Option(None, "--password", help="password for --user (stored in the file, mode 0600)"),
    tls_cert: Path = typer.Option(None, "--tls-cert", help="client certificate (PEM)"),
    tls_key: Path = typer.Option(None, "--tls-key", help="client certificate's key (PEM)"),
    tls_ca: Path = typer.Option(None, "--tls-ca", help="CA certificate (PEM)"),
    deployment: Path = typer.Option(None, "--deployment", help="security deployment folder (deployment.json)"),
    description: str = typer.Option(None, "--description", help="a note shown by `context ls`"),
    select: bool = typer.Option(False, "--select", help="also select it"),
) -> None:
    """Save (or update) a context: options given replace those saved, the others stay.

    Paths are stored absolute. Only the options on this command line are saved, never LEDGERBUS_* variables.

    Examples:

      ledgerbus context save prod --url nats://10.0.0.5:4222 --nkey deploy/nats/secrets/cli.nk --select

      ledgerbus context save local --url nats://127.0.0.1:4222 --description "my laptop"
    """
    store = _store()
    given = Context(description=description, url=url, prefix=prefix,
                    creds=str(creds) if creds else None, nkey=str(nkey) if nkey else None, user=user,
                    password=password, tls_cert=str(tls_cert) if tls_cert else None,
                    tls_key=str(tls_key) if tls_key else None, tls_ca=str(tls_ca) if tls_ca else None,
                    deployment=str(deployment) if deployment else None)
    given = absolute(given, Path.cwd())
    for f in PATH_FIELDS:
        value = getattr(given, f)
        if value is not None and not Path(value).exists():
            fail(f"--{f.replace('_', '-')} {value}: no such file or folder")
    try:
        base = store.load(name) if store.exists(name) else Context()
        ctx = merged(base, given)
        path = store.save(name, ctx)
        if select:
            store.select(name)
    except ConfigError as exc:
        fail(str(exc))
    console.print(f"saved context [bold]{name}[/] ({path})" + (", selected" if select else ""), highlight=False)


@app.command()
def select(name: str = NameArg) -> None:
    """Use this context by default (flags and LEDGERBUS_* variables still win over it).

    Examples:

      ledgerbus context select prod
    """
    try:
        _store().select(name)
    except ConfigError as exc:
        fail(str(exc))
    console.print(f"selected context [bold]{name}[/]", highlight=False)


@app.command()
def unselect() -> None:
    """Select no context: commands go back to --url / LEDGERBUS_NATS_URL or the embedded server.

    Examples:

      ledgerbus context unselect
    """
    store = _store()
    was = store.selected()
    store.unselect()
    console.print(f"unselected context {was}" if was else "no context was selected", highlight=False)


@app.command("ls")
def ls(as_json: bool = JsonOption) -> None:
    """List the saved contexts; * marks the selected one.

    Examples:

      ledgerbus context ls --json
    """
    store = _store()
    selected = store.selected()
    rows: list[dict[str, Any]] = []
    identities: list[str] = []
    for name in store.names():
        try:
            ctx = store.load(name)
        except ConfigError as exc:
            rows.append({"name": name, "selected": name == selected, "error": str(exc)})
            identities.append(str(exc))
            continue
        rows.append({"name": name, "selected": name == selected, **_shown(ctx)})
        identities.append(_identity(ctx))
    if as_json:
        print(json.dumps(rows))
        return
    if not rows:
        console.print("no contexts saved (see `ledgerbus context save --help`)", highlight=False)
        return
    from rich.table import Table

    table = Table("", "name", "url", "credentials", "description", header_style="bold")
    for r, who in zip(rows, identities):
        table.add_row("*" if r["selected"] else "", str(r["name"]), str(r.get("url") or ""), who,
                      str(r.get("description") or ""))
    console.print(table)


@app.command()
def show(name: Optional[str] = typer.Argument(None, help="the context (default: the selected one)"),
         as_json: bool = JsonOption) -> None:
    """Show a context's settings (a password is masked).

    Examples:

      ledgerbus context show prod --json
    """
    store = _store()
    name = name or store.selected()
    if name is None:
        fail("no context is selected: name one (see `ledgerbus context ls`)")
    try:
        ctx = store.load(name)
    except ConfigError as exc:
        fail(str(exc))
    data = {"name": name, "selected": name == store.selected(), "path": str(store.path(name)), **_shown(ctx)}
    if as_json:
        print(json.dumps(data))
        return
    for key, value in data.items():
        console.print(f"{key:>12}: {value}", highlight=False)


@app.command()
def rm(name: str = NameArg) -> None:
    """Delete a context (and unselect it if it was selected).

    Examples:

      ledgerbus context rm old-laptop
    """
    try:
        _store().remove(name)
    except ConfigError as exc:
        fail(str(exc))
    console.print(f"removed context {name}", highlight=False)
