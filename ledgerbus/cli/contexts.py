"""Saved connection profiles ("contexts"), one JSON file each, like the `nats` CLI's.

    $XDG_CONFIG_HOME/ledgerbus/context/<name>.json    (default ~/.config/ledgerbus/...)
    $XDG_CONFIG_HOME/ledgerbus/context.txt            the selected context's name

A context holds where to connect (url, prefix) and as whom (creds, nkey, user/password, TLS files, the
security deployment folder). Paths are stored absolute so a context works from any directory. Files are
written 0600: a context may hold a password.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import msgspec

from ledgerbus.errors import ConfigError

CONTEXT_ENV = "LEDGERBUS_CONTEXT"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class Context(msgspec.Struct, rename="camel", omit_defaults=True, forbid_unknown_fields=False):
    description: str | None = None
    url: str | None = None
    prefix: str | None = None
    creds: str | None = None
    nkey: str | None = None
    user: str | None = None
    password: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    deployment: str | None = None


#: The fields that name a file or folder: stored absolute.
PATH_FIELDS = ("creds", "nkey", "tls_cert", "tls_key", "tls_ca", "deployment")
FIELDS = tuple(Context.__struct_fields__)

_decoder = msgspec.json.Decoder(Context)


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "ledgerbus"


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise ConfigError(f"context name {name!r} must match [A-Za-z0-9][A-Za-z0-9_.-]{{0,63}}")
    return name


class ContextStore:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or config_dir()

    @property
    def folder(self) -> Path:
        return self.root / "context"

    @property
    def marker(self) -> Path:
        return self.root / "context.txt"

    def path(self, name: str) -> Path:
        return self.folder / f"{check_name(name)}.json"

    def names(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(p.stem for p in self.folder.glob("*.json") if NAME_RE.fullmatch(p.stem))

    def exists(self, name: str) -> bool:
        return self.path(name).is_file()

    def load(self, name: str) -> Context:
        path = self.path(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            known = ", ".join(self.names()) or "none saved"
            raise ConfigError(f"no context {name!r} (contexts: {known}; see `ledgerbus context ls`)") from None
        except OSError as exc:
            raise ConfigError(f"cannot read context {name!r} ({path}): {exc.strerror}") from None
        try:
            return _decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise ConfigError(f"context file {path} is not a ledgerbus context: {exc}") from None

    def save(self, name: str, ctx: Context) -> Path:
        path = self.path(name)
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(msgspec.json.format(msgspec.json.encode(ctx), indent=2) + b"\n")
        os.replace(tmp, path)  # a reader never sees half a file
        return path

    def remove(self, name: str) -> None:
        path = self.path(name)
        if not path.is_file():
            raise ConfigError(f"no context {name!r} to remove (see `ledgerbus context ls`)")
        path.unlink()
        if self.selected() == name:
            self.unselect()

    def selected(self) -> str | None:
        try:
            name = self.marker.read_text().strip()
        except OSError:
            return None
        return name or None

    def select(self, name: str) -> None:
        if not self.exists(name):
            self.load(name)  # raises the "no context" error, listing the known ones
        self.root.mkdir(parents=True, exist_ok=True)
        self.marker.write_text(name + "\n")

    def unselect(self) -> None:
        try:
            self.marker.unlink()
        except FileNotFoundError:
            pass

    def active(self, explicit: str | None) -> tuple[str, Context] | None:
        """The context to use: `explicit` (--context / $LEDGERBUS_CONTEXT), else the selected one, else none."""
        name = explicit or self.selected()
        if name is None:
            return None
        try:
            return name, self.load(name)
        except ConfigError as exc:
            if explicit is None:
                raise ConfigError(f"the selected context is broken: {exc} (`ledgerbus context unselect` clears it)") from None
            raise


def absolute(ctx: Context, cwd: Path) -> Context:
    """`ctx` with every path made absolute against `cwd` (~ expanded)."""
    updates = {}
    for f in PATH_FIELDS:
        value = getattr(ctx, f)
        if value:
            updates[f] = str((cwd / Path(value).expanduser()).resolve())
    return msgspec.structs.replace(ctx, **updates)


def merged(base: Context, changes: Context) -> Context:
    """`base` with the fields `changes` sets (saving an existing context updates it)."""
    updates = {f: getattr(changes, f) for f in FIELDS if getattr(changes, f) is not None}
    return msgspec.structs.replace(base, **updates)
