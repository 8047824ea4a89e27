"""Where and as whom a command connects: flags and environment over the context over the embedded server.

Precedence, per setting: an explicit flag, else its LEDGERBUS_* variable (typer merges the two), else
the context named by --context / $LEDGERBUS_CONTEXT, else the selected context, else nothing (the
embedded server of --data-dir, no credentials). Credentials are taken as a group: if the flags or the
environment name any of --creds, --nkey or --user, the context's credentials are not mixed in.

Security mode is a ledgerbus deployment folder (`ledgerbus security generate`): the CLI connects as one
of its users with that user's nkey, and signs every envelope it publishes with the same key, so readers
can check that `sender` is who published it. The user is --nkey's key (looked up in deployment.json),
or --user NAME (seed NAME.nk beside deployment.json), or the command's own sender (an agent's type,
the orchestrator's --name, publish's --sender).
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from ledgerbus.bus.connection import URL_ENV
from ledgerbus.cli.connopts import ConnOptions
from ledgerbus.cli.contexts import Context, ContextStore
from ledgerbus.errors import AuthorizationError, ConfigError
from ledgerbus.security.deployment import MANIFEST, Deployment
from ledgerbus.security.keys import Identity


@dataclass(frozen=True)
class Plan:
    url: str | None  # None: the embedded server of --data-dir
    prefix: str | None
    context: str | None = None
    creds: str | None = None
    nkey_file: str | None = None
    user: str | None = None
    password: str | None = None
    token: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    deployment: Deployment | None = None
    deployment_dir: str | None = None
    member: str | None = None  # security mode: the deployment user to connect (and sign) as

    def who(self) -> str:
        """The identity, as an error message names it."""
        if self.member is not None and self.deployment is not None:
            return f"user {self.member!r} (nkey {self.deployment.members[self.member].public})"
        if self.nkey_file:
            return f"the nkey in {self.nkey_file}"
        if self.creds:
            return f"the credentials in {self.creds}"
        if self.user and self.password is not None:
            return f"user {self.user!r}"
        if self.token:
            return "the token given as --user"
        return "a connection without credentials"

    def ssl_context(self) -> ssl.SSLContext | None:
        if not (self.tls_ca or self.tls_cert):
            return None
        try:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.tls_ca)
            if self.tls_cert:
                ctx.load_cert_chain(self.tls_cert, self.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the TLS files ({self.tls_cert or self.tls_ca}): {exc}") from None
        return ctx


def _readable(path: str, what: str) -> str:
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"{what} {path}: no such file")
    if not os.access(p, os.R_OK):
        raise ConfigError(f"{what} {path}: not readable")
    return str(p)


def _deployment_dir(opts: ConnOptions, nkey: str | None, ctx: Context) -> str | None:
    if opts.deployment:
        return opts.deployment
    if nkey and (Path(nkey).expanduser().parent / MANIFEST).is_file():
        return str(Path(nkey).expanduser().parent)
    return ctx.deployment


def _member(dep: Deployment, where: str, name: str) -> str:
    if name not in dep.members:
        raise AuthorizationError(f"authorization failed: no user {name!r} in the deployment at {where} "
                                 f"(users: {', '.join(sorted(dep.members))})")
    dep.identity(name)  # its seed must be readable: a ConfigError naming <name>.nk otherwise
    return name


def resolve(opts: ConnOptions, *, url: str | None, prefix: str | None, sender: str | None = None,
            store: ContextStore | None = None) -> Plan:
    """The plan for one connection. Reads the context, seed and deployment files; connects to nothing."""
    active = (store or ContextStore()).active(opts.context)
    ctx_name, ctx = active if active is not None else (None, Context())
    url = url or os.environ.get(URL_ENV) or ctx.url
    prefix = prefix or ctx.prefix

    own = bool(opts.creds or opts.nkey or opts.user)
    creds = opts.creds if own else ctx.creds
    nkey = opts.nkey if own else ctx.nkey
    user = opts.user if own else ctx.user
    password = opts.password or (None if own else ctx.password)
    tls = {f: getattr(opts, f) or getattr(ctx, f) for f in ("tls_cert", "tls_key", "tls_ca")}
    if tls["tls_key"] and not tls["tls_cert"]:
        raise ConfigError("--tls-key needs --tls-cert")
    for f, what in (("tls_cert", "--tls-cert"), ("tls_key", "--tls-key"), ("tls_ca", "--tls-ca")):
        if tls[f]:
            tls[f] = _readable(tls[f], what)
    if sum(bool(x) for x in (creds, nkey)) > 1:
        raise ConfigError("--creds and --nkey are two ways to authenticate: give one")
    if password is not None and not user:
        raise ConfigError("--password needs --user")

    dep_dir = _deployment_dir(opts, nkey, ctx)
    if dep_dir is None:
        if creds:
            creds = _readable(creds, "--creds")
        if nkey:
            nkey = _readable(nkey, "--nkey")
        token = user if user and password is None else None
        return Plan(url, prefix, ctx_name, creds=creds, nkey_file=nkey, token=token,
                    user=None if token else user, password=password, **tls)

    # Security mode: one deployment user, whose nkey both authenticates and signs.
    if not Path(dep_dir).expanduser().is_dir():
        raise ConfigError(f"--deployment {dep_dir}: no such folder")
    if creds or password is not None:
        raise ConfigError(f"the deployment at {dep_dir} authenticates with nkeys: connect with --nkey FILE or "
                          f"--user NAME (no --creds or --password)")
    dep = Deployment.load(Path(dep_dir).expanduser())
    if nkey:
        path = _readable(nkey, "--nkey")
        try:
            ident = Identity.from_seed(Path(path).stem, Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"--nkey {nkey}: {exc.strerror}") from None
        found = [m.name for m in dep.members.values() if m.public == ident.public]
        if not found:
            raise AuthorizationError(f"authorization failed: the nkey in {nkey} ({ident.public}) is not a user of "
                                     f"the deployment at {dep_dir}")
        member = found[0]
        dep.identities[member] = Identity(member, ident.seed, ident.public)
        if user and user != member:
            raise ConfigError(f"--user {user!r} but the nkey in {nkey} is user {member!r}")
    elif user:
        member = _member(dep, dep_dir, user)
    elif sender:
        member = _member(dep, dep_dir, sender)
    else:
        raise ConfigError(f"which user of the deployment at {dep_dir}? pass --user NAME or --nkey FILE "
                          f"(users: {', '.join(sorted(dep.members))})")
    if sender and sender != member:
        raise ConfigError(f"this command sends as {sender!r} but connects as user {member!r}: envelopes are "
                          f"signed by the user that sends them, so connect as {sender!r} (--user {sender}) "
                          f"or send as {member!r}")
    if prefix and prefix != dep.prefix:
        raise ConfigError(f"--prefix {prefix!r} but the deployment at {dep_dir} is for prefix {dep.prefix!r}")
    return Plan(url, dep.prefix, ctx_name, deployment=dep, deployment_dir=dep_dir, member=member, **tls)
