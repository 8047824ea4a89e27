"""Connection options and contexts: the decorator gives typer the options, the plan applies precedence,
and `ledgerbus context` saves, selects, lists and removes profiles under $XDG_CONFIG_HOME."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from ledgerbus.cli import connopts
from ledgerbus.cli.connopts import ConnOptions, connection_options
from ledgerbus.cli.connplan import resolve
from ledgerbus.cli.contexts import Context, ContextStore
from ledgerbus.errors import AuthorizationError, ConfigError
from ledgerbus.security.deployment import Deployment

LB = [sys.executable, "-m", "ledgerbus.cli.main"]


def lb(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CONFIG_HOME": str(config)}
    return subprocess.run([*LB, *args], capture_output=True, text=True, timeout=60, env=env)


def test_the_decorator_adds_the_options_and_hands_their_values_to_connect() -> None:
    seen: list[tuple[str, ConnOptions]] = []

    @connection_options
    def cmd(name: str = typer.Option("x", "--name", help="a name")) -> None:
        seen.append((name, connopts.current().options))

    params = inspect.signature(cmd).parameters
    assert list(params)[0] == "name" and "conn_nkey" in params and "conn_context" in params
    app = typer.Typer()
    app.command()(cmd)
    app.command("other")(lambda: None)  # a second command, so typer keeps `cmd` as a subcommand
    runner = CliRunner(env={"LEDGERBUS_USER": "from-env", "LEDGERBUS_NKEY": None})
    done = runner.invoke(app, ["cmd", "--name", "n", "--nkey", "/k.nk", "--context", "prod"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    assert seen == [("n", ConnOptions(nkey="/k.nk", user="from-env", context="prod"))]
    assert connopts._session.get() is None  # nothing leaks into the next command run in this process
    assert "--tls-ca" in runner.invoke(app, ["cmd", "--help"]).output


def test_the_decorator_refuses_a_command_that_has_its_parameters() -> None:
    def cmd(conn_user: str = "x") -> None: ...

    with pytest.raises(TypeError):
        connection_options(cmd)


def test_precedence_flag_then_context(tmp_path: Path) -> None:
    store = ContextStore(tmp_path)
    store.save("prod", Context(url="nats://prod:4222", prefix="p", user="alice", password="pw",
                               tls_ca=str(tmp_path / "ca.pem")))
    (tmp_path / "ca.pem").write_text("")
    store.select("prod")
    plan = resolve(ConnOptions(), url=None, prefix=None, store=store)
    assert (plan.url, plan.prefix, plan.user, plan.password, plan.context) == ("nats://prod:4222", "p", "alice", "pw", "prod")
    assert plan.tls_ca == str(tmp_path / "ca.pem")
    # A flag's URL wins; credentials from the flags replace the context's as a group (no password mixed in).
    seed = tmp_path / "k.nk"
    seed.write_text(Deployment.generate([]).identity("admin").seed)
    mine = resolve(ConnOptions(nkey=str(seed)), url="nats://mine:1", prefix=None, store=store)
    assert (mine.url, mine.nkey_file, mine.user, mine.password) == ("nats://mine:1", str(seed), None, None)
    assert mine.tls_ca == str(tmp_path / "ca.pem")  # TLS files are per setting
    with pytest.raises(ConfigError, match="no context 'nope'"):
        resolve(ConnOptions(context="nope"), url=None, prefix=None, store=store)
    store.unselect()
    bare = resolve(ConnOptions(user="tok"), url=None, prefix=None, store=store)
    assert (bare.url, bare.token, bare.user) == (None, "tok", None)  # --user alone is a token, as in `nats`


def test_security_mode_picks_and_checks_the_user(tmp_path: Path) -> None:
    dep = Deployment.generate(["research"], clients=("cli",))
    dep.save(tmp_path / "secrets")
    store = ContextStore(tmp_path / "config")
    secrets = str(tmp_path / "secrets")
    by_seed = resolve(ConnOptions(nkey=f"{secrets}/cli.nk"), url="u", prefix=None, store=store)
    assert by_seed.member == "cli" and by_seed.deployment_dir == secrets  # deployment.json found beside the seed
    agent = resolve(ConnOptions(deployment=secrets), url="u", prefix=None, sender="research", store=store)
    assert agent.member == "research" and agent.prefix == "lb"
    with pytest.raises(ConfigError, match="signed by the user"):
        resolve(ConnOptions(deployment=secrets, user="cli"), url="u", prefix=None, sender="research", store=store)
    with pytest.raises(AuthorizationError, match="no user 'bob'"):
        resolve(ConnOptions(deployment=secrets, user="bob"), url="u", prefix=None, store=store)
    with pytest.raises(ConfigError, match="which user"):
        resolve(ConnOptions(deployment=secrets), url="u", prefix=None, store=store)
    with pytest.raises(ConfigError, match="prefix"):
        resolve(ConnOptions(deployment=secrets, user="cli"), url="u", prefix="other", store=store)
    with pytest.raises(ConfigError, match="nkeys"):
        resolve(ConnOptions(deployment=secrets, user="cli", password="pw"), url="u", prefix=None, store=store)


def test_context_round_trip(tmp_path: Path) -> None:
    config = tmp_path / "config"
    (tmp_path / "seed.nk").write_text("SU...")
    saved = subprocess.run([*LB, "context", "save", "prod", "--url", "nats://10.0.0.5:4222", "--nkey", "seed.nk",
                            "--password", "secret", "--user", "bob", "--description", "the cluster"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=60,
                           env={**os.environ, "XDG_CONFIG_HOME": str(config)})
    assert saved.returncode == 0, saved.stderr
    path = config / "ledgerbus" / "context" / "prod.json"
    stored = json.loads(path.read_text())
    assert stored["nkey"] == str(tmp_path / "seed.nk")  # relative paths are kept absolute
    assert stored["password"] == "secret" and path.stat().st_mode & 0o077 == 0  # a password: owner only
    assert lb("context", "save", "local", "--url", "nats://127.0.0.1:4222", config=config).returncode == 0
    assert lb("context", "select", "prod", config=config).returncode == 0
    assert (config / "ledgerbus" / "context.txt").read_text().strip() == "prod"

    listed = json.loads(lb("context", "ls", "--json", config=config).stdout)
    assert [(c["name"], c["selected"]) for c in listed] == [("local", False), ("prod", True)]
    assert listed[1]["password"] == "***" and listed[1]["url"] == "nats://10.0.0.5:4222"
    shown = json.loads(lb("context", "show", "--json", config=config).stdout)
    assert shown["name"] == "prod" and shown["description"] == "the cluster" and shown["password"] == "***"
    # Saving again updates the options given and keeps the others.
    assert lb("context", "save", "prod", "--url", "nats://10.0.0.6:4222", config=config).returncode == 0
    again = json.loads(path.read_text())
    assert again["url"] == "nats://10.0.0.6:4222" and again["user"] == "bob"

    missing = lb("context", "select", "nope", config=config)
    assert missing.returncode == 1 and "no context 'nope'" in missing.stderr and len(missing.stderr.splitlines()) == 1
    bad_file = lb("context", "save", "x", "--nkey", str(tmp_path / "absent.nk"), config=config)
    assert bad_file.returncode == 1 and "no such file" in bad_file.stderr
    assert lb("context", "rm", "prod", config=config).returncode == 0
    assert not path.exists() and not (config / "ledgerbus" / "context.txt").exists()  # unselected with it
    assert [c["name"] for c in json.loads(lb("context", "ls", "--json", config=config).stdout)] == ["local"]
    assert lb("context", "rm", "prod", config=config).returncode == 1


def test_a_selected_context_is_used_and_a_broken_one_is_said(tmp_path: Path) -> None:
    config = tmp_path / "config"
    assert lb("context", "save", "dead", "--url", "nats://127.0.0.1:1", "--select", config=config).returncode == 0
    done = lb("status", config=config)
    assert done.returncode == 2 and "no NATS server reachable at nats://127.0.0.1:1" in done.stderr
    (config / "ledgerbus" / "context" / "dead.json").write_text("{not json")
    broken = lb("status", config=config)
    assert broken.returncode == 1 and "selected context is broken" in broken.stderr
    assert len(broken.stderr.strip().splitlines()) == 1
