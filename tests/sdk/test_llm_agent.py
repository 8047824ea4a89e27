"""The LLM example agent against a local stand-in for an OpenAI-compatible endpoint (a real HTTP server)."""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ledgerbus.examples.llm import CAPABILITY, LLMClient, LLMSettings, build_agent
from ledgerbus.orchestrator.breaker import CircuitBreaker


class StandIn:
    """Answers /v1/chat/completions like an OpenAI-compatible API; `mode` decides how."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.calls: list[dict] = []
        self.release = threading.Event()  # a "slow" call hangs until the test is over
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stand_in.calls.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                if stand_in.mode == "slow":
                    stand_in.release.wait(10)
                    return
                status, answer = {
                    "ok": (200, {"model": body["model"], "choices": [{"message": {
                        "role": "assistant", "content": body["messages"][-1]["content"].upper()},
                        "finish_reason": "stop"}], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}),
                    "fail": (500, {"error": {"message": "overloaded"}}),
                    "reject": (400, {"error": {"message": "max_tokens too large"}}),
                    "garbage": (200, {"nothing": "useful"}),
                }[stand_in.mode]
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[StandIn]:
    s = StandIn()
    yield s
    s.close()


def agent_for(endpoint: StandIn, *, timeout: float = 5.0, failures: int = 5):
    client = LLMClient(LLMSettings(url=endpoint.url, model="stand-in-1", api_key="sk-test", timeout=timeout),
                       breaker=CircuitBreaker("llm-test", failure_threshold=failures, reset_timeout=60))
    return build_agent(client), client


async def test_completion_through_the_endpoint(run_agent, endpoint):
    agent, _ = agent_for(endpoint)
    conv = await run_agent(agent, CAPABILITY, {"prompt": "hello", "system": "be loud", "maxTokens": 5})
    assert conv.response == {"text": "HELLO", "model": "stand-in-1", "finishReason": "stop",
                             "promptTokens": 3, "completionTokens": 1}
    assert conv.actions == ["REQUEST", "ACK", "PROGRESS", "RESPONSE"]
    call = endpoint.calls[0]
    assert call["path"] == "/v1/chat/completions" and call["auth"] == "Bearer sk-test"
    assert call["body"]["model"] == "stand-in-1" and call["body"]["max_tokens"] == 5
    assert call["body"]["messages"] == [{"role": "system", "content": "be loud"}, {"role": "user", "content": "hello"}]


async def test_a_slow_endpoint_is_a_retryable_timeout(run_agent, endpoint):
    endpoint.mode = "slow"
    agent, _ = agent_for(endpoint, timeout=0.3)
    conv = await run_agent(agent, CAPABILITY, {"prompt": "hello"})
    assert conv.error.code == "TIMED_OUT" and conv.error.retryable


async def test_breaker_opens_after_failures_and_stops_calling(run_agent, endpoint):
    endpoint.mode = "fail"
    agent, client = agent_for(endpoint, failures=2)
    for _ in range(2):
        conv = await run_agent(agent, CAPABILITY, {"prompt": "hello"})
        assert conv.error.code == "UPSTREAM_ERROR" and conv.error.retryable
        assert "HTTP 500" in conv.error.message
    endpoint.mode = "ok"  # even a recovered endpoint is left alone until the cool-down ends
    conv = await run_agent(agent, CAPABILITY, {"prompt": "hello"})
    assert conv.error.code == "BREAKER_OPEN" and conv.error.retryable
    assert conv.error.details["retryAfter"] > 0
    assert len(endpoint.calls) == 2 and client.breaker.state.value == "open"


async def test_rejections_and_garbage(run_agent, endpoint):
    agent, client = agent_for(endpoint, failures=1)
    endpoint.mode = "reject"
    conv = await run_agent(agent, CAPABILITY, {"prompt": "hello"})
    assert conv.error.code == "UPSTREAM_REJECTED" and not conv.error.retryable
    assert client.breaker.state.value == "closed"  # our request was wrong, the endpoint is fine
    endpoint.mode = "garbage"
    conv = await run_agent(agent, CAPABILITY, {"prompt": "hello"})
    assert conv.error.code == "UPSTREAM_ERROR" and "choices" in conv.error.message
    # Bad input never reaches the endpoint: the schema refuses it, naming the field.
    calls = len(endpoint.calls)
    conv = await run_agent(agent, CAPABILITY, {"prompt": "hello", "temperature": 9}, validate=False)
    assert conv.error.code == "INVALID_MESSAGE" and "temperature" in conv.error.message
    assert len(endpoint.calls) == calls


async def test_configuration_comes_from_the_environment(run_agent, endpoint, monkeypatch):
    monkeypatch.delenv("LEDGERBUS_LLM_URL", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    agent = build_agent(LLMClient())
    conv = await run_agent(agent, CAPABILITY, {"prompt": "hello"})
    assert conv.error.code == "NOT_CONFIGURED" and "LEDGERBUS_LLM_URL" in conv.error.message
    monkeypatch.setenv("LEDGERBUS_LLM_URL", endpoint.url)
    monkeypatch.setenv("LEDGERBUS_LLM_MODEL", "env-model")
    conv = await run_agent(agent, CAPABILITY, {"prompt": "hi"})
    assert conv.response["text"] == "HI" and conv.response["model"] == "env-model"
