"""An agent that calls an LLM through any OpenAI-compatible HTTP endpoint — where real AI calls go.

    LEDGERBUS_LLM_URL=http://localhost:11434/v1 LEDGERBUS_LLM_MODEL=llama3.2 \\
        ledgerbus agent run ledgerbus.examples.llm:agent

The external call is the part that fails in production, so it sits behind a timeout and a circuit
breaker: a slow provider becomes a retryable TIMED_OUT, a failing one UPSTREAM_ERROR, and after
`LEDGERBUS_LLM_BREAKER_FAILURES` consecutive failures the agent answers BREAKER_OPEN at once instead of
piling requests onto a provider that is down. Its capability lives in its own registry, so it is not
part of the built-in examples' schema contract.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.error
import urllib.request
from typing import Annotated, Any

import msgspec

from ledgerbus.agents.context import Context
from ledgerbus.agents.sdk import Agent, AgentError
from ledgerbus.orchestrator.breaker import CircuitBreaker
from ledgerbus.schemas.capability import CapabilityRegistry

CAPABILITY = "llm.complete"


class Prompt(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """Ask the model: a prompt, an optional system message, and generation limits."""

    prompt: Annotated[str, msgspec.Meta(min_length=1, max_length=100_000)]
    system: Annotated[str, msgspec.Meta(max_length=20_000)] | None = None
    max_tokens: Annotated[int, msgspec.Meta(ge=1, le=32_000)] = 512
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] = 0.2


class Completion(msgspec.Struct, kw_only=True, rename="camel"):
    """The model's answer and what it cost."""

    text: str
    model: str
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class LLMSettings(msgspec.Struct, kw_only=True):
    url: str  # base URL of the API, e.g. https://api.openai.com/v1 (…/chat/completions is appended)
    model: str
    api_key: str | None = None
    timeout: float = 30.0

    @classmethod
    def from_env(cls) -> "LLMSettings":
        url = os.environ.get("LEDGERBUS_LLM_URL") or os.environ.get("OPENAI_BASE_URL")
        if not url:
            raise AgentError("NOT_CONFIGURED", "set LEDGERBUS_LLM_URL to an OpenAI-compatible API base URL "
                             "(e.g. http://localhost:11434/v1) and LEDGERBUS_LLM_MODEL to a model name")
        try:
            timeout = float(os.environ.get("LEDGERBUS_LLM_TIMEOUT", "30"))
        except ValueError:
            raise AgentError("NOT_CONFIGURED", "LEDGERBUS_LLM_TIMEOUT must be a number of seconds") from None
        return cls(url=url, model=os.environ.get("LEDGERBUS_LLM_MODEL", "gpt-4o-mini"),
                   api_key=os.environ.get("LEDGERBUS_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY"),
                   timeout=timeout)


class _Upstream(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LLMClient:
    """POST /chat/completions with a timeout, behind a circuit breaker shared by the calls of this process."""

    def __init__(self, settings: LLMSettings | None = None, breaker: CircuitBreaker | None = None) -> None:
        self._settings = settings
        self.breaker = breaker or CircuitBreaker(
            "llm-endpoint", failure_threshold=int(os.environ.get("LEDGERBUS_LLM_BREAKER_FAILURES", "5")),
            reset_timeout=float(os.environ.get("LEDGERBUS_LLM_BREAKER_RESET", "30")))

    @property
    def settings(self) -> LLMSettings:
        # Read at call time, so an agent started before the environment is complete says so per request.
        return self._settings or LLMSettings.from_env()

    async def complete(self, prompt: Prompt) -> Completion:
        cfg = self.settings
        if not self.breaker.allow():
            wait = self.breaker.retry_after()
            raise AgentError("BREAKER_OPEN", f"the LLM endpoint failed repeatedly; not calling it for {wait:.1f}s",
                             retryable=True, details={"retryAfter": round(wait, 3)})
        messages = ([{"role": "system", "content": prompt.system}] if prompt.system else []) + [
            {"role": "user", "content": prompt.prompt}]
        body = {"model": cfg.model, "messages": messages, "max_tokens": prompt.max_tokens,
                "temperature": prompt.temperature}
        try:
            # urllib blocks, so it runs in a thread; wait_for bounds our wait, urllib's own timeout the thread's.
            data = await asyncio.wait_for(asyncio.to_thread(_post, cfg, body), cfg.timeout)
            out = _parse(data, cfg.model)
        except asyncio.TimeoutError:
            self.breaker.record_failure()
            raise AgentError("TIMED_OUT", f"the LLM endpoint did not answer within {cfg.timeout}s",
                             retryable=True) from None
        except _Upstream as exc:
            if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:
                # The endpoint is healthy; the request is wrong. Not the breaker's business, and not retryable.
                self.breaker.record_success()
                raise AgentError("UPSTREAM_REJECTED", str(exc), details={"status": exc.status}) from None
            self.breaker.record_failure()
            raise AgentError("UPSTREAM_ERROR", str(exc), retryable=True,
                             details={"status": exc.status} if exc.status else {}) from None
        except BaseException:
            self.breaker.release()  # cancelled mid-call: give a half-open probe slot back
            raise
        self.breaker.record_success()
        return out


def _post(cfg: LLMSettings, body: dict[str, Any]) -> Any:
    url = cfg.url.rstrip("/") + "/chat/completions"
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if cfg.api_key:
        headers["Authorization"] = f"Bearer {cfg.api_key}"
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=cfg.timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300].decode(errors="replace")
        raise _Upstream(f"LLM endpoint answered HTTP {exc.code}: {detail}", exc.code) from None
    except (urllib.error.URLError, OSError) as exc:
        if "timed out" in str(exc):
            raise asyncio.TimeoutError() from None
        raise _Upstream(f"cannot reach the LLM endpoint at {url}: {getattr(exc, 'reason', exc)}") from None
    except ValueError as exc:
        raise _Upstream(f"the LLM endpoint answered something that is not JSON: {exc}") from None


def _parse(data: Any, model: str) -> Completion:
    try:
        choice = data["choices"][0]
        usage = data.get("usage") or {}
        return Completion(text=choice["message"]["content"] or "", model=data.get("model") or model,
                          finish_reason=choice.get("finish_reason"), prompt_tokens=usage.get("prompt_tokens"),
                          completion_tokens=usage.get("completion_tokens"))
    except (KeyError, IndexError, TypeError, AttributeError):
        raise _Upstream("the LLM endpoint's answer has no choices[0].message.content") from None


def build_agent(client: LLMClient | None = None, name: str = "llm") -> Agent:
    """An LLM agent around `client` (default: configured from the environment)."""
    llm = client or LLMClient()
    agent = Agent(name, description="LLM completions through an OpenAI-compatible endpoint",
                  registry=CapabilityRegistry())

    @agent.capability(CAPABILITY)
    async def complete(prompt: Prompt, ctx: Context) -> Completion:
        """A chat completion of the prompt by the configured model."""
        await ctx.progress(stage="calling the model")
        ctx.span.set_attribute("ledgerbus.llm.max_tokens", prompt.max_tokens)
        return await llm.complete(prompt)

    return agent


agent = build_agent()
