"""`ledgerbus security`: generate the users, permissions and nkeys of a secured deployment."""

from __future__ import annotations

from pathlib import Path

import typer

from ledgerbus.cli.common import console, fail
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
