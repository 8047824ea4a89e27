"""Importing the examples leaves the process-wide capability registry alone; `register()` fills it."""

from __future__ import annotations

import json
import subprocess
import sys

from ledgerbus.examples import AGENTS, ARTICLE, register
from ledgerbus.schemas.capability import CapabilityRegistry

BUILT_IN = ["content.article", "editor.edit", "research.search", "writing.draft"]

# A fresh interpreter: in this one, other tests have already registered capabilities of their own.
_PROBE = """
import json
import ledgerbus.examples, ledgerbus.examples.llm, ledgerbus.examples.research, ledgerbus.examples.writing
import ledgerbus.examples.editor, ledgerbus.examples.pipeline
from ledgerbus.schemas.capability import registry
before = [c.name for c in registry]
ledgerbus.examples.register()
print(json.dumps({"before": before, "after": [c.name for c in registry]}))
"""


def test_importing_the_examples_registers_nothing_and_register_registers_them() -> None:
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60, check=True)
    seen = json.loads(out.stdout)
    assert seen == {"before": [], "after": BUILT_IN}


def test_register_fills_the_registry_it_is_given_with_the_agents_own_capabilities() -> None:
    reg = CapabilityRegistry()
    register(reg)
    register(reg)  # twice is harmless
    assert [c.name for c in reg] == BUILT_IN
    research = AGENTS[0].handlers["research.search"].capability
    assert reg.get("research.search").input.tp is research.input.tp
    assert reg.get(ARTICLE).input.json_schema()["$ref"] == "#/$defs/ArticleRequest"
