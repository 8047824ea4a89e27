"""`--decomposer module:attr` and `--policies module:attr`: a user's pipeline for the commands that run an orchestrator.

`orchestrator run`, `fork` and `replay --mode resimulate|re-execute` take the same two options; without
them they use the demo pipeline (ContentPipeline for content.article) and the default policies.
"""

from __future__ import annotations

from typing import Any

import typer

from ledgerbus.cli.common import fail
from ledgerbus.cli.loader import Loaded, load_spec, where
from ledgerbus.errors import ConfigError

DecomposerOption = typer.Option(
    None, "--decomposer",
    help="module:attr or path/to/file.py:attr: a Decomposer (or a class built with no arguments) declaring "
         "`capabilities`; default: the demo content pipeline")
PoliciesOption = typer.Option(None, "--policies", help="module:attr or path/to/file.py:attr: a PolicySet")


def _named(loaded: Loaded) -> None:
    if not hasattr(loaded.module, loaded.attr):
        raise ConfigError(f"{loaded.spec!r}: {loaded.target} has no attribute {loaded.attr!r}")


def load_decomposer(spec: str) -> Any:
    """The decomposer a spec names (a class is built with no arguments), checked for `plan` and `capabilities`."""
    from ledgerbus.orchestrator.plan import declared_capabilities

    loaded = load_spec(spec, default_attr="decomposer", example="my_pipeline:decomposer")
    _named(loaded)
    obj = loaded.value
    if isinstance(obj, type):
        try:
            obj = obj()
        except Exception as exc:  # user code: say where, in one line
            raise ConfigError(f"{spec!r}: building {loaded.attr}() failed: {where(exc)}") from None
    if not callable(getattr(obj, "plan", None)):
        raise ConfigError(f"{spec!r}: {loaded.attr!r} is not a Decomposer (a {type(obj).__name__} with no "
                          f"plan(capability, request) method)")
    try:
        declared_capabilities(obj)
    except ConfigError as exc:
        raise ConfigError(f"{spec!r}: {exc}") from None
    return obj


def load_policies(spec: str) -> Any:
    """The PolicySet a spec names."""
    from ledgerbus.orchestrator.policy import PolicySet

    loaded = load_spec(spec, default_attr="policies", example="my_pipeline:policies")
    _named(loaded)
    if not isinstance(loaded.value, PolicySet):
        raise ConfigError(f"{spec!r}: {loaded.attr!r} is not a ledgerbus PolicySet "
                          f"(it is a {type(loaded.value).__name__})")
    return loaded.value


def load_pipeline(decomposer: str | None, policies: str | None) -> tuple[Any, Any]:
    """(decomposer or None, policies or None) from the two options; None means the command's default."""
    return (load_decomposer(decomposer) if decomposer else None,
            load_policies(policies) if policies else None)


def pipeline_or_fail(decomposer: str | None, policies: str | None) -> tuple[Any, Any]:
    """load_pipeline for a command's synchronous part: a bad spec is one line and exit 1."""
    try:
        return load_pipeline(decomposer, policies)
    except ConfigError as exc:
        fail(str(exc))


def check_serves(decomposer: Any, capability: str, conversation: str) -> None:
    """A conversation can only be re-run by a decomposer that plans its capability."""
    declared = sorted(decomposer.capabilities)
    if capability not in declared:
        raise ConfigError(f"conversation {conversation} asks {capability!r}, which decomposer "
                          f"{type(decomposer).__name__} does not declare (it declares {', '.join(declared)})")
