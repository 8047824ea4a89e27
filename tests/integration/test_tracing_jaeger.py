"""Against a real Jaeger all-in-one (testcontainers): a live conversation and a rebuilt one are both
found through Jaeger's query API by their trace id — the conversation id. Needs a Docker engine."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from typer.testing import CliRunner

import ledgerbus.tracing as tracing
from tests.integration.tracing_world import run_flaky_conversation

JAEGER_IMAGE = "jaegertracing/all-in-one:1.76.0"  # the image deploy/docker-compose.yml runs


def _docker_unavailable() -> str | None:
    try:
        import docker
        import testcontainers  # noqa: F401
    except ImportError:
        return "testcontainers is not installed (pip install 'ledgerbus[docker]')"
    try:
        docker.from_env(timeout=3).ping()
    except Exception as exc:  # no socket, no permission, daemon down: all mean "no Docker here"
        return f"no Docker engine reachable: {type(exc).__name__}: {exc}"
    return None


DOCKER_MISSING = _docker_unavailable()
pytestmark = [pytest.mark.docker, pytest.mark.slow,
              pytest.mark.skipif(DOCKER_MISSING is not None, reason=DOCKER_MISSING or "")]


def _get(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return json.loads(resp.read())
    except (urllib.error.URLError, ConnectionError, json.JSONDecodeError):
        return None


async def _poll(url: str, ok: Any, timeout: float) -> Any:
    """Jaeger indexes asynchronously: ask until `ok(answer)` holds, or give up after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        got = await asyncio.to_thread(_get, url)
        if got is not None and ok(got):
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"Jaeger never answered as expected at {url}: last answer {got!r}")
        await asyncio.sleep(0.25)


@pytest.fixture
def jaeger():
    from testcontainers.core.container import DockerContainer

    container = (DockerContainer(JAEGER_IMAGE).with_env("COLLECTOR_OTLP_ENABLED", "true")
                 .with_exposed_ports(16686, 4318))
    container.start()
    try:
        host = container.get_container_host_ip()
        yield (f"http://{host}:{container.get_exposed_port(4318)}", f"http://{host}:{container.get_exposed_port(16686)}")
    finally:
        container.stop()


def _services(trace: dict[str, Any]) -> set[str]:
    return {trace["processes"][s["processID"]]["serviceName"] for s in trace["spans"]}


async def test_jaeger_finds_live_and_rebuilt_conversations_by_trace_id(bus, ledger, jaeger, monkeypatch):
    otlp, ui = jaeger
    await _poll(f"{ui}/api/services", lambda r: "data" in r, timeout=60)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp)
    try:
        assert tracing.configure_from_env()
        live = await run_flaky_conversation(bus, ledger)
    finally:
        tracing.shutdown()  # flushes the batch to Jaeger
    trace_id = live.result.conversation_id.replace("-", "")
    found = await _poll(f"{ui}/api/traces/{trace_id}",
                        lambda r: r.get("data") and len(r["data"][0]["spans"]) >= len(live.envelopes) + 3, timeout=30)
    (trace,) = found["data"]
    assert trace["traceID"] == trace_id
    assert _services(trace) == {"client", "orchestrator", "flaky"}
    assert any(s["operationName"] == "conversation flaky.work" for s in trace["spans"])

    # Tracing off for this one: `trace export` rebuilds it from the ledger and Jaeger has it all the same.
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    later = await run_flaky_conversation(bus, ledger)
    from ledgerbus.cli.main import app

    res = CliRunner().invoke(app, ["trace", "export", str(ledger.path), "-c", later.result.conversation_id,
                                   "--endpoint", otlp, "--prefix", bus.subjects.prefix, "--ui", ui])
    assert res.exit_code == 0, res.output
    assert f"{ui}/trace/" in res.output  # Jaeger answers at --ui: the link is printed
    rebuilt_id = later.result.conversation_id.replace("-", "")
    found = await _poll(f"{ui}/api/traces/{rebuilt_id}",
                        lambda r: r.get("data") and len(r["data"][0]["spans"]) >= len(later.envelopes) + 3, timeout=30)
    spans = found["data"][0]["spans"]
    assert all({"key": "ledgerbus.rebuilt", "type": "bool", "value": True} in s["tags"] for s in spans)
