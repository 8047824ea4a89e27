"""Three example agents that work offline and deterministically, and the content pipeline that uses them."""

from ledgerbus.examples.editor import agent as editor
from ledgerbus.examples.pipeline import CAPABILITY as ARTICLE, ContentPipeline, register
from ledgerbus.examples.research import agent as research
from ledgerbus.examples.writing import agent as writing

register()

AGENTS = (research, writing, editor)

__all__ = ["AGENTS", "ARTICLE", "ContentPipeline", "editor", "research", "writing"]
