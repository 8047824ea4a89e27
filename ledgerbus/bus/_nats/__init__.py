"""Everything ledgerbus does with nats-py, and the only package that imports it.

The rest of ledgerbus speaks to NATS through `Bus`'s methods; nats-py's errors are translated into
ledgerbus's here (`errors.py`), and nats-py's private parts the fast paths stand on are checked here
(`compat.py`, `client.py`, `pulls.py`, `appends.py`).
"""
