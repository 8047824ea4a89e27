"""How long the runtime lets one request's handler run (pure: the clock is a parameter)."""

from __future__ import annotations

#: DESIGN's task timeout, for a request with no deadline to a capability that declares no timeout.
DEFAULT_TASK_TIMEOUT = 30.0


def task_limit(deadline_ms: int | None, declared: float | None, default: float, now_ms: int) -> float:
    """Seconds left for a request: until its deadline, else the capability's declared timeout, else `default`."""
    if deadline_ms is not None:
        return max(deadline_ms - now_ms, 0) / 1000
    return declared if declared is not None else default
