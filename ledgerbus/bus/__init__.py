"""ledgerbus.bus."""
