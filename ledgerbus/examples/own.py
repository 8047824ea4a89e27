"""The registry the example agents declare their capabilities in, apart from the process-wide one.

Importing an example must not change what a process validates against or exports as its schema
contract; `ledgerbus.examples.register()` copies these capabilities into a registry when asked.
"""

from __future__ import annotations

from ledgerbus.schemas.capability import CapabilityRegistry

registry = CapabilityRegistry()
