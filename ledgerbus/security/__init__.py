"""Security and reliability: users, permissions and nkeys per agent type, sender binding, dead letters."""
