"""The package's version, in a module below every layer: tracing stamps it on spans without importing
the `ledgerbus` facade, which names every layer. Kept equal to pyproject's (a unit test compares them)."""

__version__ = "0.1.0"
