"""Which nats-py ledgerbus runs on, and the switch that keeps it on nats-py's public API alone.

The fast paths (`client.py`, `pulls.py`, `appends.py`, the KV shortcuts in `kv.py`) stand on nats-py's
private parts. They are tested for behaviour against the range pinned in pyproject.toml
(tests/integration/test_nats_private.py); each also checks what it needs before use. With
LEDGERBUS_NATS_PLAIN=1 none of them is used: nats-py's own client, JetStream context, fetch and KV
calls do everything (slower, never different), which is the way out when a nats-py release breaks one.
"""

from __future__ import annotations

import os

PLAIN_ENV = "LEDGERBUS_NATS_PLAIN"


def plain(environ: dict[str, str] | None = None) -> bool:
    """Whether the environment asks for nats-py's public API only."""
    value = (os.environ if environ is None else environ).get(PLAIN_ENV, "")
    return value.strip().lower() not in ("", "0", "false", "no")


#: Read once, at import: a process runs on one client or the other, never on both.
PLAIN = plain()
