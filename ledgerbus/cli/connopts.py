"""The credentials options every server-talking command takes, added by one decorator.

    @connection_options
    def status(url: str = UrlOption, ...) -> None: ...

adds --creds, --nkey, --user, --password, --tls-cert, --tls-key, --tls-ca, --deployment and --context
(and their LEDGERBUS_* variables) to the command without touching its signature, and keeps their values
for the duration of the call in a context variable that `live.connect` reads. Typer builds a command's
parameters from `inspect.signature`, which honours `__signature__`, so the wrapper advertises the
command's own parameters plus these and strips these before calling the command.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Optional, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])

PANEL = "Connection"


@dataclass(frozen=True)
class ConnOptions:
    """What the user said about credentials (flag, else environment variable); None: not said."""

    creds: str | None = None
    nkey: str | None = None
    user: str | None = None
    password: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    deployment: str | None = None
    context: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "ConnOptions":
        return cls(**{f.name: env.get(ENV[f.name]) or None for f in fields(cls)})


ENV = {
    "creds": "LEDGERBUS_CREDS",
    "nkey": "LEDGERBUS_NKEY",
    "user": "LEDGERBUS_USER",
    "password": "LEDGERBUS_PASSWORD",
    "tls_cert": "LEDGERBUS_TLS_CERT",
    "tls_key": "LEDGERBUS_TLS_KEY",
    "tls_ca": "LEDGERBUS_TLS_CA",
    "deployment": "LEDGERBUS_DEPLOYMENT",
    "context": "LEDGERBUS_CONTEXT",
}

HELP = {
    "creds": "NATS credentials file (JWT + seed, as `nats --creds`)",
    "nkey": "nkey seed file to authenticate with; in a ledgerbus security deployment also the key that signs",
    "user": "user name (with --password), token (alone), or with --deployment the deployment user to connect as",
    "password": "password for --user",
    "tls_cert": "client certificate (PEM)",
    "tls_key": "client certificate's key (PEM)",
    "tls_ca": "CA certificate (PEM) that signed the server's certificate",
    "deployment": "security deployment folder (deployment.json + <user>.nk): connect as a deployment user "
                  "and sign envelopes as it (default: the folder of --nkey when it holds deployment.json)",
    "context": "use this saved context (see `ledgerbus context`) instead of the selected one",
}

_PARAM = {name: f"conn_{name}" for name in ENV}  # parameter names no command uses itself


def _option(name: str) -> Any:
    flag = "--" + name.replace("_", "-")
    return typer.Option(None, flag, envvar=ENV[name], help=HELP[name], rich_help_panel=PANEL, show_envvar=True)


@dataclass
class Session:
    """One command's connection settings, and the permission violations its connections were told of."""

    options: ConnOptions
    denied: list[str] = field(default_factory=list)
    who: str = ""
    url: str = ""
    last_error: str = ""
    plan: Any = None  # the connplan.Plan the last connection used

    async def note(self, exc: Exception) -> None:
        """error_cb of the command's connections: keep what the server refused."""
        text = str(exc) or type(exc).__name__
        self.last_error = text
        if "permissions violation" in text.lower() and len(self.denied) < 16:
            self.denied.append(text.removeprefix("nats: ").strip("'"))

    def denial(self) -> str | None:
        """One line for a command that failed after the server refused it something, else None."""
        if not self.denied:
            return None
        return f"authorization: {self.who} at {self.url} is not permitted to do this: {self.denied[0]}"


_session: contextvars.ContextVar[Session | None] = contextvars.ContextVar("ledgerbus_cli_session", default=None)


def current() -> Session:
    """The running command's session; outside a decorated command, one from the environment alone."""
    session = _session.get()
    if session is None:
        session = Session(ConnOptions.from_env(os.environ))
        _session.set(session)
    return session


def denial() -> str | None:
    session = _session.get()
    return session.denial() if session is not None else None


def connection_options(func: F) -> F:
    """Give the typer command `func` the credentials options; `live.connect` uses their values."""
    sig = inspect.signature(func)
    clash = set(_PARAM.values()) & set(sig.parameters)
    if clash:
        raise TypeError(f"{func.__name__} already has parameters {sorted(clash)}")

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(param, None) for name, param in _PARAM.items()}
        token = _session.set(Session(ConnOptions(**values)))
        try:
            return func(*args, **kwargs)
        finally:
            _session.reset(token)

    extra = [inspect.Parameter(param, inspect.Parameter.KEYWORD_ONLY, default=_option(name), annotation=Optional[str])
             for name, param in _PARAM.items()]
    wrapper.__signature__ = sig.replace(parameters=[*sig.parameters.values(), *extra])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**getattr(func, "__annotations__", {}), **{p.name: Optional[str] for p in extra}}
    return wrapper  # type: ignore[return-value]
