"""The agent directory lives in `ledgerbus.bus.directory` (a bus-level facility); this module keeps the old
import path working and describes an Agent's capabilities for its directory entry."""

from __future__ import annotations

from ledgerbus.agents.sdk import Agent
from ledgerbus.bus.directory import (BUCKET, DEFAULT_TTL, Announcer, Directory, InstanceInfo,
                                     describe_capabilities)
from ledgerbus.schemas.directory import CapabilityInfo

__all__ = ["BUCKET", "DEFAULT_TTL", "Announcer", "Directory", "InstanceInfo", "describe", "describe_capabilities"]


def describe(agent: Agent) -> list[CapabilityInfo]:
    """Directory entries for the capabilities `agent` handles."""
    return describe_capabilities(r.capability for r in agent.handlers.values())
