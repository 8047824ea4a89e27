"""Issue 19: two deployments' prefixes never share a stream, a consumer or a KV bucket, and a prefix
outside the documented charset is refused in one line before anything is started."""

from __future__ import annotations

import pytest
from clihelp import one_line_error
from typer.testing import CliRunner

from ledgerbus.agents.directory import Directory
from ledgerbus.bus.connection import Bus
from ledgerbus.bus.streams import ConsumerSettings, consumer_name
from ledgerbus.bus.subjects import Subjects
from ledgerbus.cli.main import app
from ledgerbus.errors import ConfigError
from ledgerbus.schemas.envelope import new_request

INVALID = ["OPS", "Ops", "a.b", "", "x" * 33, "a b", "a*", "a>", "a/b"]


async def test_dash_and_underscore_prefixes_get_their_own_stream_consumers_and_buckets(nats_server):
    dash, under = f"{nats_server.prefix}-x", f"{nats_server.prefix}_x"
    a = await Bus.connect(nats_server.url, prefix=dash, name="team-a")
    b = await Bus.connect(nats_server.url, prefix=under, name="team-b")
    try:
        assert a.subjects.stream != b.subjects.stream
        # Each team's agent type sets up its consumer with its own settings; neither rewrites the other's.
        await a.agent_consumer("research", ConsumerSettings(ack_wait=11))
        await b.agent_consumer("research", ConsumerSettings(ack_wait=22))
        ca = await a.js.consumer_info(a.subjects.stream, consumer_name("research"))
        cb = await b.js.consumer_info(b.subjects.stream, consumer_name("research"))
        assert (ca.config.ack_wait, cb.config.ack_wait) == (11, 22)
        assert (ca.config.filter_subject, cb.config.filter_subject) == (f"{dash}.research.REQUEST.>",
                                                                        f"{under}.research.REQUEST.>")
        await a.publish(new_request(sender="cli", recipient="research", capability="research.search",
                                    payload={"topic": "x"}))
        assert (await a.js.stream_info(a.subjects.stream)).state.messages == 1
        assert (await b.js.stream_info(b.subjects.stream)).state.messages == 0
        ka, kb = await Directory(a).bucket(), await Directory(b).bucket()
        assert ka.name != kb.name
    finally:
        await a.close()
        await b.close()


def test_the_default_prefix_keeps_todays_names():
    s = Subjects()
    assert (s.stream, s.bucket("LB_AGENTS"), s.bucket("LB_RESULTS")) == ("LEDGER", "LB_AGENTS", "LB_RESULTS")
    assert Subjects("acme").stream == "LEDGER_ACME"


@pytest.mark.parametrize("prefix", INVALID, ids=repr)
def test_an_invalid_prefix_is_a_config_error(prefix):
    with pytest.raises(ConfigError, match="lower-case letters, digits"):
        Subjects(prefix)


async def test_bus_refuses_an_invalid_prefix_before_connecting(nats_server):
    with pytest.raises(ConfigError):
        await Bus.connect(nats_server.url, prefix="OPS")


@pytest.mark.parametrize("prefix", ["OPS", "a.b", "", "x" * 33], ids=repr)
@pytest.mark.parametrize("command", [("status",), ("tail", "--all"), ("replay", "--summary"), ("trace", "show"),
                                     ("export",), ("security", "generate", "research")], ids=" ".join)
def test_cli_says_so_in_one_line(tmp_path, monkeypatch, prefix, command):
    # Nothing listens there: a command that got past the prefix would fail with exit 2 instead.
    runner = CliRunner(env={"LEDGERBUS_NATS_URL": "nats://127.0.0.1:1", "LEDGERBUS_PREFIX": None})
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, [*command, "--prefix", prefix])
    assert result.exit_code == 1, result.output
    assert "lower-case letters, digits" in one_line_error(result)
    if prefix:  # from the environment too
        result = runner.invoke(app, list(command), env={"LEDGERBUS_PREFIX": prefix})
        assert result.exit_code == 1, result.output
        assert "lower-case letters, digits" in one_line_error(result)
    assert list(tmp_path.iterdir()) == []  # nothing was created: no data directory, no ledger, no secrets
