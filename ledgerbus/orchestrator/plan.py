"""Plans: a request decomposed into a DAG of steps, each asking one capability of some agent.

The orchestrator keeps three sets of step ids (done, running, failed) — rebuilt from the ledger
on resume — and asks the plan what may run next. Nothing here does I/O.

Dependencies and failure: when a step fails (after retries and fallbacks), the steps that need
it can never run: they are *blocked*, transitively. An `optional` step is best-effort: when it
fails or is blocked, steps depending on it still run, without its result in the context.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ledgerbus.errors import ConfigError
from ledgerbus.eventstore.fold import ConversationStatus
from ledgerbus.orchestrator.aggregate import Decision, FanIn
from ledgerbus.schemas.envelope import CAPABILITY_PATTERN

_CAPABILITY = re.compile(CAPABILITY_PATTERN)


@dataclass(frozen=True)
class PlanContext:
    """What an input builder sees: the original request and the outputs of finished steps."""

    request: Mapping[str, Any]
    results: Mapping[str, Any]  # step id -> that step's output payload


InputBuilder = Callable[[PlanContext], Mapping[str, Any]]


@dataclass(frozen=True)
class Step:
    """One unit of work. `input` is a payload, or a function building it from earlier results."""

    id: str
    capability: str
    input: Mapping[str, Any] | InputBuilder
    depends_on: tuple[str, ...] = ()
    optional: bool = False
    #: How this step's dependencies fan in. None: all of them, except that failed optional ones are
    #: skipped (best effort). With a policy, e.g. Quorum(2), the step starts as soon as the policy is
    #: satisfied (its input sees the results that exist by then) and is blocked once it never can be.
    fan_in: FanIn | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ConfigError(f"a step id must be a non-empty string, got {self.id!r}")
        if not isinstance(self.capability, str) or not self.capability:
            raise ConfigError(f"step {self.id!r}: capability must be a non-empty string")
        if not (callable(self.input) or isinstance(self.input, Mapping)):
            raise ConfigError(f"step {self.id!r}: input must be a mapping or a function of "
                              f"PlanContext, got {type(self.input).__name__}")
        if isinstance(self.depends_on, str):  # ("a") instead of ("a",) would mean deps 'a'...
            raise ConfigError(f"step {self.id!r}: depends_on must be a sequence of step ids, "
                              f"got the string {self.depends_on!r}")
        deps = tuple(self.depends_on)
        if len(set(deps)) != len(deps):
            raise ConfigError(f"step {self.id!r} lists a dependency twice: {deps!r}")
        object.__setattr__(self, "depends_on", deps)


class Plan:
    """A validated DAG of steps. Plan order (the given sequence) breaks every tie."""

    def __init__(self, steps: Sequence[Step]) -> None:
        self._steps: tuple[Step, ...] = tuple(steps)
        if not self._steps:
            raise ConfigError("a plan needs at least one step")
        self._by_id: dict[str, Step] = {}
        self._index: dict[str, int] = {}
        for i, step in enumerate(self._steps):
            if not isinstance(step, Step):
                raise ConfigError(f"plan item {i} is not a Step: {step!r}")
            if step.id in self._by_id:
                raise ConfigError(f"duplicate step id {step.id!r} in plan")
            self._by_id[step.id] = step
            self._index[step.id] = i
        for step in self._steps:
            for dep in step.depends_on:
                if dep not in self._by_id:
                    raise ConfigError(f"step {step.id!r} depends on unknown step {dep!r}")
        self._check_acyclic()
        self._order = self._topological()
        # What is blocked with nothing failed (a quorum no dependency set can meet): the engine asks after
        # every finished step, and in a conversation going well that is the only answer it gets.
        self._blocked_from_start = self._blocked(frozenset())

    # --- structure -------------------------------------------------------------------------

    @property
    def steps(self) -> tuple[Step, ...]:
        return self._steps

    def step(self, step_id: str) -> Step:
        try:
            return self._by_id[step_id]
        except KeyError:
            raise KeyError(f"no step {step_id!r} in plan") from None

    def __iter__(self) -> Iterator[Step]:
        return iter(self._steps)

    def __len__(self) -> int:
        return len(self._steps)

    def __contains__(self, step_id: object) -> bool:
        return step_id in self._by_id

    def dependencies(self) -> dict[str, tuple[str, ...]]:
        """Each step's dependencies, in plan order: the edges of the DAG (what the ledger records of it)."""
        return {s.id: s.depends_on for s in self._steps}

    def order(self) -> list[Step]:
        """Every step after all its dependencies; among steps free to go, plan order first."""
        return list(self._order)

    # --- progress --------------------------------------------------------------------------

    def blocked(self, failed: Set[str]) -> list[Step]:
        """Steps that can never run because a non-optional dependency failed or is blocked.

        Failed steps themselves are not listed. In plan order.
        """
        if not failed:
            return list(self._blocked_from_start)
        return self._blocked(failed)

    def _blocked(self, failed: Set[str]) -> list[Step]:
        dead = set(failed)
        out: list[Step] = []
        for step in self._order:  # dependencies are decided before their dependents
            if step.id in dead:
                continue
            if step.fan_in is not None:
                lost = sum(d in dead for d in step.depends_on)
                # Counting every live dependency as pending gives "can it still be satisfied?".
                never = step.fan_in.decide(0, lost, len(step.depends_on) - lost) is Decision.FAILED
            else:
                never = any(d in dead and not self._by_id[d].optional for d in step.depends_on)
            if never:
                dead.add(step.id)
                out.append(step)
        return sorted(out, key=lambda s: self._index[s.id])

    def ready(self, done: Set[str], running: Set[str], failed: Set[str]) -> list[Step]:
        """Steps not yet started whose dependencies are all done, in plan order.

        A failed (or blocked) optional dependency counts as settled: best-effort means its
        dependents go ahead without it.
        """
        dead = set(failed) | {s.id for s in self.blocked(failed)}
        started = set(done) | set(running) | dead
        return [step for step in self._steps if step.id not in started and self._deps_allow(step, done, dead)]

    def _deps_allow(self, step: Step, done: Set[str], dead: Set[str]) -> bool:
        if step.fan_in is None:
            return all(d in done or (d in dead and self._by_id[d].optional) for d in step.depends_on)
        ok = sum(d in done for d in step.depends_on)
        lost = sum(d in dead for d in step.depends_on)
        return step.fan_in.decide(ok, lost, len(step.depends_on) - ok - lost) is Decision.SATISFIED

    def finished(self, done: Set[str], failed: Set[str]) -> bool:
        """Whether every step is done, failed or blocked: nothing is left to run or wait for."""
        settled = set(done) | set(failed) | {s.id for s in self.blocked(failed)}
        return all(step.id in settled for step in self._steps)

    def outcome(self, done: Set[str], failed: Set[str],
                fallback: Iterable[str] = ()) -> ConversationStatus:
        """The conversation's outcome once `finished(done, failed)`.

        `fallback` names done steps whose result came from a fallback. FAILED when a required
        step failed or is blocked; DEGRADED when only optional steps failed or a fallback was
        used; DONE otherwise.
        """
        if not self.finished(done, failed):
            raise ValueError("the plan is not finished: some steps can still run")
        dead = set(failed) | {s.id for s in self.blocked(failed)}
        if any(not self._by_id[i].optional for i in dead if i in self._by_id):
            return ConversationStatus.FAILED
        if dead or any(i in done for i in fallback):
            return ConversationStatus.DEGRADED
        return ConversationStatus.DONE

    def build_input(self, step: Step, ctx: PlanContext) -> dict[str, Any]:
        """The REQUEST payload of `step`: a copy, so the caller may change it freely."""
        if isinstance(step.input, Mapping):
            return dict(step.input)
        payload = step.input(ctx)
        if not isinstance(payload, Mapping):
            raise ConfigError(f"the input builder of step {step.id!r} returned "
                              f"{type(payload).__name__}, expected a mapping")
        return dict(payload)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly description, for logs and the ledger (builders appear by name)."""
        steps: list[dict[str, Any]] = []
        for step in self._steps:
            item: dict[str, Any] = {"id": step.id, "capability": step.capability,
                                    "depends_on": list(step.depends_on),
                                    "optional": step.optional}
            if isinstance(step.input, Mapping):
                item["input"] = dict(step.input)
            else:
                item["input_builder"] = getattr(step.input, "__qualname__", repr(step.input))
            steps.append(item)
        return {"steps": steps}

    @classmethod
    def single(cls, capability: str, request: Mapping[str, Any], step_id: str = "main") -> Plan:
        """The trivial plan: one step asking `capability` with the request as its input."""
        return cls([Step(step_id, capability, dict(request))])

    # --- validation ------------------------------------------------------------------------

    def _check_acyclic(self) -> None:
        # Iterative DFS (plans from an LLM decomposer can be long chains: no recursion limit).
        white, grey, black = 0, 1, 2
        color = {s.id: white for s in self._steps}
        for root in self._steps:
            if color[root.id] != white:
                continue
            path: list[str] = [root.id]
            stack: list[Iterator[str]] = [iter(root.depends_on)]
            color[root.id] = grey
            while stack:
                nxt = next(stack[-1], None)
                if nxt is None:
                    color[path.pop()] = black
                    stack.pop()
                elif color[nxt] == grey:
                    cycle = path[path.index(nxt):] + [nxt]
                    raise ConfigError("dependency cycle in plan: "
                                      + " depends on ".join(repr(i) for i in cycle))
                elif color[nxt] == white:
                    color[nxt] = grey
                    path.append(nxt)
                    stack.append(iter(self._by_id[nxt].depends_on))

    def _topological(self) -> tuple[Step, ...]:
        # Kahn's algorithm with a heap on plan position: stable, O(n log n).
        remaining = {s.id: len(s.depends_on) for s in self._steps}
        dependents: dict[str, list[str]] = {s.id: [] for s in self._steps}
        for s in self._steps:
            for d in s.depends_on:
                dependents[d].append(s.id)
        heap = [self._index[i] for i, n in remaining.items() if n == 0]
        heapq.heapify(heap)
        out: list[Step] = []
        while heap:
            step = self._steps[heapq.heappop(heap)]
            out.append(step)
            for child in dependents[step.id]:
                remaining[child] -= 1
                if remaining[child] == 0:
                    heapq.heappush(heap, self._index[child])
        return tuple(out)

    def __repr__(self) -> str:
        return f"Plan({[s.id for s in self._steps]!r})"


@runtime_checkable
class Decomposer(Protocol):
    """Turns a request for a capability into a plan (rules, templates, or an LLM).

    `capabilities` names the capabilities it plans: an orchestrator serving it answers those and refuses
    any other with UNKNOWN_CAPABILITY, and announces them in the agent directory.
    """

    @property
    def capabilities(self) -> Collection[str]: ...

    def plan(self, capability: str, request: Mapping[str, Any]) -> Plan: ...


class SingleStepDecomposer:
    """The default decomposer: every request is one step, sent as-is.

    It plans any capability it is asked (`Orchestrator.run`); as a service it answers `capabilities`.
    """

    def __init__(self, capabilities: Iterable[str] = ()) -> None:
        self.capabilities = frozenset(capabilities)

    def plan(self, capability: str, request: Mapping[str, Any]) -> Plan:
        return Plan.single(capability, request)


def declared_capabilities(decomposer: object) -> frozenset[str]:
    """The capability names a decomposer declares, or a one-line ConfigError saying what is wrong with them."""
    kind = type(decomposer).__name__
    if not hasattr(decomposer, "capabilities"):
        raise ConfigError(f"decomposer {kind} has no `capabilities`: give it a collection of the capability "
                          f"names it plans, e.g. capabilities = {{\"my.capability\"}}")
    caps = getattr(decomposer, "capabilities")
    if isinstance(caps, (str, bytes)) or not isinstance(caps, Collection):
        raise ConfigError(f"decomposer {kind}: `capabilities` must be a collection of capability names, "
                          f"not {caps!r}")
    bad = [c for c in caps if not isinstance(c, str) or len(c) > 128 or not _CAPABILITY.match(c)]
    if bad:
        raise ConfigError(f"decomposer {kind}: `capabilities` holds {bad[0]!r}, not a capability name "
                          f"(dotted words of [a-z0-9_-], at most 128 characters)")
    if not caps:
        raise ConfigError(f"decomposer {kind} declares no capabilities: a service with it would answer nothing")
    return frozenset(caps)
