"""`ledgerbus ui`: a web view of a ledger, served from the installed package (no build step, nothing fetched).

A layer above the event store and the orchestrator, below the CLI: it reads a ledger through the same
public functions the CLI uses (the SQLite store, the fold, time travel) and never writes to it.
"""
