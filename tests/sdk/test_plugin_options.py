"""The plugin's --nats-url and --nats-docker options, exercised the way users run them: a pytest subprocess."""

import asyncio
import os
import subprocess
import sys

import pytest

USER_TEST = '''
import msgspec
import pytest
from ledgerbus import Agent, CapabilityRegistry

class T(msgspec.Struct):
    text: str

agent = Agent("echo", registry=CapabilityRegistry())

@agent.capability("echo.say")
async def say(t: T, ctx) -> T:
    return T(t.text[::-1])

@pytest.mark.asyncio
async def test_on_the_given_server(run_agent, bus, nats_server):
    conv = await run_agent(agent, "echo.say", {"text": "abc"})
    assert conv.response == {"text": "cba"}
    print("PREFIX", nats_server.prefix, "URL", nats_server.url)
'''


def run_pytest(tmp_path, *args):
    (tmp_path / "test_user.py").write_text(USER_TEST)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "LEDGERBUS_"))}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "test_user.py", *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_nats_url_points_the_suite_at_an_existing_server(nats_server, tmp_path):
    run = run_pytest(tmp_path, "--nats-url", nats_server.url)
    assert run.returncode == 0, run.stdout + run.stderr
    line = next(ln for ln in run.stdout.splitlines() if "PREFIX" in ln)
    prefix = line.split()[line.split().index("PREFIX") + 1]
    assert prefix.startswith("t") and nats_server.url in line  # its own namespace, on our server

    async def streams() -> list[str]:
        import nats

        nc = await nats.connect(nats_server.url)
        try:
            return [s.config.name for s in await nc.jetstream().streams_info()]
        finally:
            await nc.close()

    assert f"LEDGER_{prefix.upper()}" in asyncio.run(streams())  # the user's test wrote there


@pytest.mark.slow
def test_nats_docker_uses_testcontainers_or_says_what_is_missing(tmp_path):
    run = run_pytest(tmp_path, "--nats-docker")
    out = run.stdout + run.stderr
    try:
        import testcontainers  # noqa: F401
    except ImportError:
        assert run.returncode == 4 and "pip install 'ledgerbus[docker]'" in out, out
        return
    import docker

    try:
        docker.from_env().ping()
    except Exception:
        assert run.returncode == 1 and "--nats-docker: cannot start nats:2.10" in out and "Docker running" in out, out
        assert "Traceback" not in out
        return
    assert run.returncode == 0, out  # Docker is here: the official image served the test


def test_the_plugin_is_cheap_to_import():
    # Loaded into every pytest run of every project that installs ledgerbus: it must not pull in the library.
    code = ("import sys, ledgerbus.pytest_plugin; "
            "print(sorted(m for m in sys.modules if m.startswith(('ledgerbus', 'nats', 'msgspec', 'opentelemetry'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "['ledgerbus', 'ledgerbus.pytest_plugin']", out.stdout + out.stderr
