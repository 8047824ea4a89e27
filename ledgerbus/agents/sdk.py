"""The agent SDK: an agent type declares capabilities with typed handlers.

    agent = Agent("research")

    @agent.capability("research.search")
    async def search(query: ResearchQuery, ctx: Context) -> ResearchNotes:
        await ctx.progress(stage="searching")
        return ResearchNotes(...)

Input and output types come from the handler's annotations (msgspec Structs or pydantic models).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ledgerbus.errors import AgentError as AgentError, ConfigError  # AgentError: re-exported, handlers raise it
from ledgerbus.schemas.capability import Capability, CapabilityRegistry, registry as default_registry
from ledgerbus.schemas.envelope import is_address

Handler = Callable[..., Awaitable[Any]]


@dataclass
class Registration:
    capability: Capability
    handler: Handler
    takes_context: bool
    #: Seconds the runtime lets the handler run when the REQUEST has no deadline (None: the runtime's default).
    timeout: float | None = None


class Agent:
    """An agent type: a name (its address on the bus) and its capabilities."""

    def __init__(self, name: str, *, description: str = "", registry: CapabilityRegistry | None = None) -> None:
        if not is_address(name):
            raise ConfigError(f"agent name {name!r} must match [a-z0-9_-]{{1,64}}")
        self.name = name
        self.description = description
        # `is None`, not `or`: an empty registry is falsy (it has __len__) and must still be the one used.
        self.registry = registry if registry is not None else default_registry
        self.handlers: dict[str, Registration] = {}

    def capability(
        self,
        name: str,
        *,
        input: Any = None,
        output: Any = None,
        version: int = 1,
        description: str = "",
        timeout: float | None = None,
    ) -> Callable[[Handler], Handler]:
        """Register the decorated coroutine as this agent's handler for capability `name`.

        `timeout`: how long a request may run when it carries no deadline (default: the runtime's
        `task_timeout`, 30 s); past it the handler is cancelled and the request answered TIMED_OUT.
        """
        if timeout is not None and not timeout > 0:
            raise ConfigError(f"timeout of {name!r} must be a positive number of seconds, not {timeout!r}")

        def decorate(fn: Handler) -> Handler:
            if not inspect.iscoroutinefunction(fn):
                raise ConfigError(f"handler for {name!r} must be an async function")
            hints = typing.get_type_hints(fn)
            params = list(inspect.signature(fn).parameters)
            in_type = input or (hints.get(params[0]) if params else None) or dict
            out_type = output or hints.get("return") or dict
            cap = self.registry.register(
                name, in_type, out_type, version=version,
                description=description or (inspect.getdoc(fn) or "").split("\n")[0],
            )
            self.handlers[name] = Registration(cap, fn, takes_context=len(params) >= 2, timeout=timeout)
            return fn

        return decorate

    @property
    def capabilities(self) -> list[str]:
        return sorted(self.handlers)

    def __repr__(self) -> str:
        return f"Agent({self.name!r}, capabilities={self.capabilities})"
