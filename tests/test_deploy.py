"""deploy/docker-compose.yml agrees with the code: services, ports, commands and environment.

No Docker needed: the compose file is parsed, each service's command is resolved against the real CLI
and agents, and each variable against what ledgerbus actually reads.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from typer.testing import CliRunner

from ledgerbus.bus.connection import PREFIX_ENV, URL_ENV
from ledgerbus.cli.agent_cmd import load_agent
from ledgerbus.cli.main import app
from ledgerbus.tracing import setup as tracing_setup

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
AGENT_SERVICES = {"research", "writing", "editor"}
LEDGERBUS_SERVICES = AGENT_SERVICES | {"orchestrator", "client"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def _ports(service: dict[str, Any]) -> dict[int, int]:
    """container port → host port."""
    out = {}
    for p in service.get("ports", []):
        host, _, container = str(p).rpartition(":")
        out[int(container.split("/")[0])] = int(host or container.split("/")[0])
    return out


def _code_reads(name: str) -> bool:
    pattern = f'"{name}"'
    return any(pattern in p.read_text() for p in (ROOT / "ledgerbus").rglob("*.py"))


def test_the_services_are_there(compose):
    assert {"nats", "jaeger"} | LEDGERBUS_SERVICES <= set(compose["services"])


def test_jaeger_all_in_one_with_ui_and_both_otlp_ports(compose):
    jaeger = compose["services"]["jaeger"]
    assert jaeger["image"].startswith("jaegertracing/all-in-one:")
    assert _ports(jaeger) == {16686: 16686, 4317: 4317, 4318: 4318}
    assert str(jaeger["environment"]["COLLECTOR_OTLP_ENABLED"]).lower() == "true"


def test_nats_runs_jetstream_on_a_volume(compose):
    nats = compose["services"]["nats"]
    cmd = nats["command"]
    assert "-js" in cmd
    store = cmd[cmd.index("-sd") + 1]
    volume, _, mount = nats["volumes"][0].partition(":")
    assert mount == store and volume in compose["volumes"]
    assert 4222 in _ports(nats)
    assert "healthz?js-enabled-only=true" in " ".join(nats["healthcheck"]["test"])


def test_ledgerbus_services_build_from_the_dockerfile(compose):
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.1[1-9]", dockerfile, re.M)
    assert re.search(r"^RUN pip install \.", dockerfile, re.M)
    assert 'ENTRYPOINT ["ledgerbus"]' in dockerfile
    for name in LEDGERBUS_SERVICES:
        build = compose["services"][name]["build"]
        context = (DEPLOY / build["context"]).resolve()
        assert (context / "pyproject.toml").exists(), name
        assert (context / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile", name
        for src in re.findall(r"^COPY (.+) \S+$", dockerfile, re.M):
            assert all((context / part).exists() for part in src.split()), src
        depends = compose["services"][name]["depends_on"]
        assert depends["nats"]["condition"] == "service_healthy" and "jaeger" in depends


def test_every_command_is_a_real_cli_command():
    runner = CliRunner()
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    for name in LEDGERBUS_SERVICES:
        cmd = compose["services"][name]["command"]
        # Only the command path matters here: ask it for --help, which exits 0 only if it exists.
        words = [w for w in cmd if not w.startswith(("{", "-")) and ":" not in w][:2]
        res = runner.invoke(app, [*words, "--help"])
        assert res.exit_code == 0, f"{name}: ledgerbus {' '.join(words)}: {res.output}"


def test_each_agent_service_runs_that_agent_under_its_own_service_name(compose):
    for name in AGENT_SERVICES:
        svc = compose["services"][name]
        cmd = svc["command"]
        assert cmd[:2] == ["agent", "run"]
        agent = load_agent(cmd[2])
        assert agent.name == name == svc["environment"]["OTEL_SERVICE_NAME"]
    orch = compose["services"]["orchestrator"]
    name = orch["command"][orch["command"].index("--name") + 1]
    assert name == orch["environment"]["OTEL_SERVICE_NAME"] == "orchestrator"


def test_the_client_asks_the_orchestrator_something_it_accepts(compose):
    from ledgerbus.examples import ARTICLE, register
    from ledgerbus.schemas.capability import CapabilityRegistry

    registry = CapabilityRegistry()
    register(registry)
    cmd = compose["services"]["client"]["command"]
    assert cmd[:3] == ["request", "orchestrator", ARTICLE]
    registry.get(ARTICLE).validate_input(json.loads(cmd[3]))  # raises InvalidMessage naming the field


def test_environment_is_what_the_code_reads_and_points_at_the_right_services(compose):
    services = compose["services"]
    nats_port = 4222
    for name in LEDGERBUS_SERVICES:
        env = {k: str(v) for k, v in services[name]["environment"].items()}
        for var in env:
            assert _code_reads(var), f"{name}: ledgerbus never reads {var}"
        url = urlparse(env[URL_ENV])
        assert (url.scheme, url.hostname, url.port) == ("nats", "nats", nats_port)
        assert env[PREFIX_ENV] == "lb"
        # Tracing is on for this environment, and its exporter sends to Jaeger's OTLP/HTTP port.
        assert tracing_setup.wanted(env), name
        (exporter,) = tracing_setup.exporters_from_env(env)
        endpoint = urlparse(exporter._endpoint)
        assert endpoint.hostname == "jaeger" and endpoint.port in _ports(services["jaeger"])
        assert endpoint.port == 4318 and endpoint.path == "/v1/traces"
        tracing_setup.sampler_from_env(env)  # a valid sampler, or ConfigError


def test_readme_explains_the_deploy():
    readme = (ROOT / "README.md").read_text()
    assert "docker compose -f deploy/docker-compose.yml up" in readme
    assert "http://localhost:16686" in readme
    compose_text = (DEPLOY / "docker-compose.yml").read_text()
    assert "run --rm client" in compose_text and "run --rm client" in readme
    assert "ledgerbus trace export" in readme and "ledgerbus trace show" in readme
