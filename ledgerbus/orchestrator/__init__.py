"""ledgerbus.orchestrator."""
