"""ledgerbus.schemas."""
