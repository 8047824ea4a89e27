"""How long an agent's directory entry lives without a fresh announcement (seconds).

The directory announces every ttl/3 and its bucket forgets an entry after ttl; security mode creates
that bucket ahead of time for users who may not create it, so both read the same number from here.
"""

DEFAULT_TTL = 10.0
