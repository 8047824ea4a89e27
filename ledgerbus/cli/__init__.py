"""ledgerbus.cli."""
