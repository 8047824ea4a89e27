"""`ledgerbus publish` / `request`: validation before sending, answers as they arrive, and every error path."""

import json

import msgspec

from ledgerbus.agents.sdk import Agent, AgentError
from ledgerbus.schemas.capability import CapabilityRegistry

from clihelp import one_line_error


class Order(msgspec.Struct):
    item: str
    quantity: int


def shop_agent() -> Agent:
    """An agent the CLI process has never imported: its schema can only come from the live directory."""
    agent = Agent("shop", registry=CapabilityRegistry())

    @agent.capability("shop.order")
    async def order(o: Order, ctx) -> Order:
        await ctx.progress(stage="picking")
        if o.item == "unicorn":
            raise AgentError("OUT_OF_STOCK", "no unicorns left")
        return o

    return agent


def test_publish_prints_ids_and_appends_the_request(cli, examples):
    r = cli("publish", "research", "research.search", '{"topic": "nats"}', "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["id"] and out["conversationId"] == out["id"] and out["position"] >= 1
    tail = cli("tail", "--all", "--conversation", out["conversationId"], "--count", "1", "--jsonl")
    first = json.loads(tail.stdout.splitlines()[0])
    assert first["id"] == out["id"] and first["action"] == "REQUEST" and first["payload"] == {"topic": "nats"}

    human = cli("publish", "research", "research.search", '{"topic": "nats"}')
    assert human.exit_code == 0 and "published" in human.stdout and "conversation" in human.stdout


def test_request_prints_ack_progress_and_response(cli, background):
    background.agents(shop_agent())
    r = cli("request", "shop", "shop.order", '{"item": "tea", "quantity": 2}', "--timeout", "10")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert any(" ACK " in ln and "from shop" in ln for ln in lines), r.stdout
    assert any("PROGRESS" in ln and "picking" in ln for ln in lines), r.stdout
    assert any("RESPONSE" in ln for ln in lines) and '"quantity": 2' in r.stdout
    assert all(" ms " in ln for ln in lines if "from shop" in ln)  # elapsed time on every answer

    js = cli("request", "shop", "shop.order", '{"item": "tea", "quantity": 1}', "--json")
    assert js.exit_code == 0, js.output
    answers = [json.loads(ln) for ln in js.stdout.splitlines()]
    assert [a["action"] for a in answers] == ["ACK", "PROGRESS", "RESPONSE"]
    assert all(isinstance(a["elapsedMs"], int) for a in answers)


def test_request_exit_status_tells_an_error_from_success(cli, background):
    background.agents(shop_agent())
    r = cli("request", "shop", "shop.order", '{"item": "unicorn", "quantity": 1}')
    assert r.exit_code == 1, r.output
    assert "ERROR" in r.stdout and "OUT_OF_STOCK: no unicorns left" in r.stdout


def test_request_times_out_with_one_line(cli, nats_server):
    from ledgerbus.bus.streams import ConsumerSettings

    # A consumer but no instance: the request is accepted and queued, and nobody answers.
    import asyncio

    from ledgerbus.bus.connection import Bus

    async def make_consumer() -> None:
        bus = await Bus.connect(nats_server.url, prefix=nats_server.prefix)
        sub = await bus.agent_consumer("sleepy", ConsumerSettings())
        await sub.unsubscribe()
        await bus.close()

    asyncio.run(make_consumer())
    r = cli("request", "sleepy", "sleepy.nap", "{}", "--timeout", "0.5")
    assert r.exit_code == 1
    notes, error = r.stderr.strip().splitlines()[:-1], r.stderr.strip().splitlines()[-1]
    assert notes == ["note: no live instance of sleepy; the request waits in its queue",
                     "note: no schema known for sleepy.nap; the payload was not checked here"]
    assert error.startswith("error: ") and "no answer" in error and "Traceback" not in r.output


def test_payload_failing_its_schema_names_field_and_rule(cli, background, examples):
    background.agents(shop_agent())
    # Schema from the live directory (the CLI never imported the shop agent).
    r = cli("publish", "shop", "shop.order", '{"item": "tea", "quantity": "two"}')
    assert r.exit_code == 1
    err = one_line_error(r)
    assert "`quantity`" in err and "`type`" in err and "$.payload.quantity" in err
    missing = one_line_error(cli("publish", "shop", "shop.order", '{"item": "tea"}'))
    assert "quantity" in missing and "required" in missing
    # Built-in capabilities are checked too (the research agent's topic has a minimum length).
    short = one_line_error(cli("request", "research", "research.search", '{"topic": ""}'))
    assert "topic" in short and "length" in short.lower()
    # Nothing invalid reached the ledger.
    tail = cli("tail", "--all", "--idle", "0.5", "--jsonl")
    assert tail.stdout.strip() == ""


def test_unknown_agent_and_capability(cli, examples):
    r = cli("publish", "nobody", "nobody.works", "{}")
    assert r.exit_code == 1
    err = one_line_error(r)
    assert "unknown agent 'nobody'" in err and "research" in err  # and says which agents exist
    cap = one_line_error(cli("publish", "research", "research.dance", "{}"))
    assert "no capability 'research.dance'" in cap and "research.search" in cap
    bad = one_line_error(cli("publish", "Bad.Agent", "x.y", "{}"))
    assert "not an address" in bad


def test_bad_json_and_payload_sources(cli, examples, tmp_path):
    r = cli("publish", "research", "research.search", '{"topic": ')
    assert r.exit_code == 1
    assert "not valid JSON" in one_line_error(r)
    assert "must be a JSON object" in one_line_error(cli("publish", "research", "research.search", "[1, 2]"))
    assert "cannot read payload file" in one_line_error(cli("publish", "research", "research.search", "@nope.json"))
    f = tmp_path / "q.json"
    f.write_text('{"topic": "jetstream"}')
    assert cli("publish", "research", "research.search", f"@{f}").exit_code == 0
    assert cli("publish", "research", "research.search", "-", input='{"topic": "kv"}').exit_code == 0


def test_no_server_reachable_is_one_line_and_exit_2(cli, tmp_path, unused_port):
    url = f"nats://127.0.0.1:{unused_port}"
    for args in (["publish", "research", "research.search", '{"topic": "x"}'], ["request", "research", "research.search", "{}"],
                 ["status"], ["tail"], ["stalls"], ["agents"], ["conversations"], ["asyncapi", "--live"],
                 ["deadletters", "list"], ["deadletters", "redrive", "--all"], ["replay", "--url", url],
                 ["trace", "show"], ["export", "--url", url], ["retention"], ["agent", "run", "ledgerbus.examples.research:agent"],
                 ["orchestrator", "run"]):
        r = cli(*args, "--url", url, server=False)
        assert r.exit_code == 2, (args, r.output)
        assert f"no NATS server reachable at {url}" in one_line_error(r)
    # No --url and no server running for the data directory: says how to get one.
    r = cli("status", "--data-dir", str(tmp_path / "empty"), server=False)
    assert r.exit_code == 2
    assert "ledgerbus up" in one_line_error(r)
    # None of them starts one instead (deadletters used to).
    for args in (["deadletters", "list"], ["deadletters", "redrive", "--all"], ["tail"], ["agents"],
                 ["trace", "show"], ["retention"]):
        r = cli(*args, "--data-dir", str(tmp_path / "empty"), server=False)
        assert r.exit_code == 2 and "ledgerbus up" in one_line_error(r), (args, r.output)
        assert not (tmp_path / "empty").exists(), args
