"""ledgerbus.eventstore."""
