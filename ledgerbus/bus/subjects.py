"""Subject naming: `<prefix>.<recipient>.<action>.<conversationId>` (DESIGN.md, "Subjects and streams")."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ledgerbus.errors import ConfigError, InvalidMessage
from ledgerbus.schemas.envelope import Envelope

TEMPLATE = "{prefix}.{recipient}.{action}.{conversationId}"
DEFAULT_PREFIX = "lb"
MAX_PREFIX = 32
_PREFIX = re.compile(r"[a-z0-9_-]{1,%d}" % MAX_PREFIX)


def check_prefix(prefix: str) -> str:
    """`prefix` if it is a valid namespace, else ConfigError. One charset keeps the name mapping one-to-one:
    upper-casing is injective only when the prefix has no upper case, and `_` and `-` are both kept."""
    if not _PREFIX.fullmatch(prefix):
        raise ConfigError(f"prefix {prefix!r} is not valid: it must be 1-{MAX_PREFIX} characters of lower-case "
                          "letters, digits, '_' and '-'")
    return prefix


@dataclass(frozen=True)
class Subjects:
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        check_prefix(self.prefix)

    @property
    def stream(self) -> str:
        """Stream name; one per prefix so several deployments can share a NATS account."""
        return "LEDGER" if self.prefix == DEFAULT_PREFIX else f"LEDGER_{self.prefix.upper()}"

    def bucket(self, base: str) -> str:
        """A KV bucket's name for this prefix (bucket names allow [A-Za-z0-9_-], so the prefix fits as it is)."""
        return base if self.prefix == DEFAULT_PREFIX else f"{base}_{self.prefix.upper()}"

    @property
    def template(self) -> str:
        return TEMPLATE.replace("{prefix}", self.prefix)

    def all(self) -> str:
        return f"{self.prefix}.>"

    def of(self, env: Envelope) -> str:
        return f"{self.prefix}.{env.recipient}.{env.action.value}.{env.conversation_id}"

    def requests(self, agent_type: str) -> str:
        return f"{self.prefix}.{agent_type}.REQUEST.>"

    def inbox(self, address: str) -> str:
        return f"{self.prefix}.{address}.*.>"

    def conversation(self, conversation_id: str) -> str:
        return f"{self.prefix}.*.*.{conversation_id}"

    def parse(self, subject: str) -> tuple[str, str, str]:
        """(recipient, action, conversation id) of a ledger subject."""
        parts = subject.split(".")
        if len(parts) != 4 or parts[0] != self.prefix:
            raise InvalidMessage(f"subject {subject!r} is not of the form {self.template}", path="subject")
        return parts[1], parts[2], parts[3]
