"""ledgerbus.agents."""
