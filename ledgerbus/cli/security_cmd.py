"""`ledgerbus security`: generate the users, permissions and nkeys of a secured deployment."""

from __future__ import annotations

from pathlib import Path

import typer

from ledgerbus.cli.common import DataDirOption, UrlOption, console, fail, run
from ledgerbus.cli.connopts import connection_options
from ledgerbus.cli.live import check_prefix_option

app = typer.Typer(help="Secured deployments: one NATS user (nkey) per agent type, least-privilege permissions.",
                  no_args_is_help=True)


@app.command()
def generate(
    agents: list[str] = typer.Argument(..., help="agent types (each gets its own user and nkey)"),
    out: Path = typer.Option(Path("deploy/nats/secrets"), "--out", "-o", help="folder for deployment.json, auth.conf, <user>.nk"),
    client: list[str] = typer.Option(["orchestrator"], "--client", help="client users (orchestrator, CLI); repeatable"),
    prefix: str = typer.Option("lb", "--prefix", envvar="LEDGERBUS_PREFIX", callback=check_prefix_option,
                              help="subject namespace"),
    cert: Path = typer.Option(None, "--tls-cert", help="server certificate (PEM): enables TLS"),
    key: Path = typer.Option(None, "--tls-key", help="server key (PEM)"),
    ca: Path = typer.Option(None, "--tls-ca", help="CA (PEM): clients must present certificates signed by it"),
) -> None:
    """Write a deployment: seeds (mode 0600), public keys and roles, and auth.conf for nats-server.

    Examples:

      ledgerbus security generate research writing editor --out deploy/nats/secrets

      nats-server -c deploy/nats/secure.conf   # includes secrets/auth.conf
    """
    from ledgerbus.errors import ConfigError
    from ledgerbus.security.deployment import Deployment, TLSFiles

    if (cert is None) != (key is None):
        fail("--tls-cert and --tls-key go together")
    try:
        dep = Deployment.generate(agents, clients=tuple(client), prefix=prefix)
    except ConfigError as exc:
        fail(str(exc))
    path = dep.save(out)
    if cert is not None and key is not None:
        tls = TLSFiles(str(cert.resolve()), str(key.resolve()), str(ca.resolve()) if ca else None, verify=ca is not None)
        (path / "tls.conf").write_text("\n".join(tls.lines()) + "\n")
        console.print(f"wrote {path / 'tls.conf'}")
    for m in dep.members.values():
        console.print(f"{m.role:9} {m.name:20} {m.public}")
    console.print(f"wrote {path}/deployment.json, auth.conf and one <user>.nk seed per user (keep the seeds secret)")


@app.command()
@connection_options
def provision(url: str = UrlOption, data_dir: Path = DataDirOption) -> None:
    """Create, as the deployment's admin, what its other users may use but not create: the ledger stream,
    the KV buckets and every agent type's consumer. Run it once on a new secured server.

    Connects as user admin of --deployment (or the admin nkey given with --nkey).

    Examples:

      ledgerbus security provision --url nats://127.0.0.1:4222 --deployment deploy/nats/secrets
    """
    run(_provision(url, data_dir))


async def _provision(url: str | None, data_dir: Path) -> None:
    from ledgerbus.cli import connopts
    from ledgerbus.cli.live import connect
    from ledgerbus.errors import ConfigError
    from ledgerbus.security.securebus import SecureBus, provision as provision_

    bus = await connect(url, data_dir, name="ledgerbus-provision", sender="admin")
    try:
        plan = connopts.current().plan
        if plan is None or plan.deployment is None or not isinstance(bus, SecureBus):
            raise ConfigError("provisioning needs the deployment: pass --deployment DIR (or --nkey DIR/admin.nk)")
        await provision_(bus, plan.deployment)
        agents = sorted(m.name for m in plan.deployment.members.values() if m.role == "agent")
    finally:
        await bus.close()
    console.print(f"provisioned {bus.subjects.stream}, the KV buckets and the consumers of {', '.join(agents) or 'no agents'}",
                  highlight=False)
