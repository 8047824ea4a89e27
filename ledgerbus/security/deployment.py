"""A secured deployment: users (one nkey each) with role permissions, and the server config that enforces them.

    dep = Deployment.generate(["research", "writing"])      # + orchestrator, recorder, admin
    dep.save("deploy/secrets")                              # <name>.nk seeds (0600) + deployment.json + auth.conf
    ServerConfig(data_dir=..., extra=dep.server_lines(tls=TLSFiles(...)))

`deployment.json` holds only public keys and roles: every process may read it to verify envelope signatures.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ledgerbus.bus.subjects import Subjects
from ledgerbus.errors import ConfigError
from ledgerbus.schemas.envelope import is_address
from ledgerbus.security import permissions as perms
from ledgerbus.security.keys import Identity

MANIFEST = "deployment.json"


@dataclass(frozen=True)
class TLSFiles:
    """Server TLS: certificate and key; with `ca_file` and `verify`, clients must present certificates too."""

    cert_file: str
    key_file: str
    ca_file: str | None = None
    verify: bool = False

    def lines(self) -> list[str]:
        out = ["tls {", f'  cert_file: "{self.cert_file}"', f'  key_file: "{self.key_file}"']
        if self.ca_file:
            out.append(f'  ca_file: "{self.ca_file}"')
        if self.verify:
            out.append("  verify: true")
        out.append("}")
        return out


@dataclass(frozen=True)
class Member:
    name: str
    role: str
    public: str


@dataclass
class Deployment:
    prefix: str = "lb"
    members: dict[str, Member] = field(default_factory=dict)
    identities: dict[str, Identity] = field(default_factory=dict)  # seeds, only where known

    @property
    def subjects(self) -> Subjects:
        return Subjects(self.prefix)

    @classmethod
    def generate(
        cls,
        agent_types: list[str],
        *,
        clients: tuple[str, ...] = ("orchestrator",),
        recorder: str = "recorder",
        admin: str = "admin",
        prefix: str = "lb",
    ) -> "Deployment":
        dep = cls(prefix=prefix)
        roles = [(a, "agent") for a in agent_types] + [(c, "client") for c in clients]
        roles += [(recorder, "recorder"), (admin, "admin")]
        for name, role in roles:
            dep.add(name, role)
        return dep

    def add(self, name: str, role: str, identity: Identity | None = None) -> Identity:
        if not is_address(name):
            raise ConfigError(f"user name {name!r} must be an address ([a-z0-9_-]{{1,64}})")
        if role not in perms.ROLES:
            raise ConfigError(f"unknown role {role!r}; roles: {', '.join(perms.ROLES)}")
        if name in self.members:
            raise ConfigError(f"{name!r} appears twice: every agent type, client and service needs its own name")
        ident = identity or Identity.generate(name)
        self.members[name] = Member(name, role, ident.public)
        self.identities[name] = ident
        return ident

    def identity(self, name: str) -> Identity:
        try:
            return self.identities[name]
        except KeyError:
            raise ConfigError(f"no seed for {name!r} in this deployment (is {name}.nk readable?)") from None

    def trust(self) -> dict[str, str]:
        """Address → public key: what envelope signatures are checked against."""
        return {m.name: m.public for m in self.members.values()}

    def permissions(self, name: str) -> perms.Permissions:
        m = self.members[name]
        return perms.ROLES[m.role](name, self.subjects)

    def authorization(self) -> list[str]:
        lines = ["authorization {", "  users = ["]
        for m in self.members.values():
            lines.append(f"    {{ nkey: {m.public}, permissions: {self.permissions(m.name).render()} }}  # {m.role} {m.name}")
        lines += ["  ]", "}"]
        return lines

    def server_lines(self, tls: TLSFiles | None = None) -> list[str]:
        """Raw nats-server config lines (ServerConfig.extra, or an `include` in deploy/nats)."""
        return self.authorization() + (tls.lines() if tls else [])

    # -- files ------------------------------------------------------------------------------

    def save(self, directory: str | os.PathLike[str]) -> Path:
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        manifest = {"prefix": self.prefix, "members": [vars(m) for m in self.members.values()]}
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        (out / "auth.conf").write_text("\n".join(self.authorization()) + "\n")
        for name, ident in self.identities.items():
            path = out / f"{name}.nk"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # a seed is a password
            with os.fdopen(fd, "w") as f:
                f.write(ident.seed + "\n")
        return out

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> "Deployment":
        path = Path(directory)
        try:
            manifest = json.loads((path / MANIFEST).read_text())
            members = [Member(**m) for m in manifest["members"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"cannot read {path / MANIFEST}: {exc}") from None
        dep = cls(prefix=str(manifest.get("prefix", "lb")))
        for m in members:
            dep.members[m.name] = m
            seed_file = path / f"{m.name}.nk"
            if seed_file.exists():
                ident = Identity.from_seed(m.name, seed_file.read_text())
                if ident.public != m.public:
                    raise ConfigError(f"{seed_file} does not match the public key of {m.name!r} in {MANIFEST}")
                dep.identities[m.name] = ident
        return dep
