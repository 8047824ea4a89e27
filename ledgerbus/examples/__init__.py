"""Three example agents that work offline and deterministically, and the content pipeline that uses them.

Importing them registers nothing in the process-wide capability registry: `register()` does, for the
demo, the CLI and tests that run the pipeline with an orchestrator (which validates step inputs and
announces content.article's schemas from that registry).
"""

from ledgerbus.examples import pipeline
from ledgerbus.examples.editor import agent as editor
from ledgerbus.examples.pipeline import CAPABILITY as ARTICLE, ContentPipeline
from ledgerbus.examples.research import agent as research
from ledgerbus.examples.writing import agent as writing
from ledgerbus.schemas.capability import CapabilityRegistry, registry as default_registry

AGENTS = (research, writing, editor)


def register(registry: CapabilityRegistry = default_registry) -> None:
    """Register the examples' capabilities (the three agents' and content.article) in `registry`.

    Calling it again is harmless; a capability of the same name registered with other types is a ConfigError.
    """
    for agent in AGENTS:
        for handler in agent.handlers.values():
            cap = handler.capability
            registry.register(cap.name, cap.input.tp, cap.output.tp, version=cap.version, description=cap.description)
    pipeline.register(registry)


__all__ = ["AGENTS", "ARTICLE", "ContentPipeline", "editor", "register", "research", "writing"]
