"""Subject naming: `<prefix>.<recipient>.<action>.<conversationId>` (DESIGN.md, "Subjects and streams")."""

from __future__ import annotations

from dataclasses import dataclass

from ledgerbus.errors import InvalidMessage
from ledgerbus.schemas.envelope import Envelope

TEMPLATE = "{prefix}.{recipient}.{action}.{conversationId}"


@dataclass(frozen=True)
class Subjects:
    prefix: str = "lb"

    @property
    def stream(self) -> str:
        """Stream name; one per prefix so several deployments can share a NATS account."""
        return "LEDGER" if self.prefix == "lb" else f"LEDGER_{self.prefix.upper().replace('-', '_')}"

    def bucket(self, base: str) -> str:
        """A KV bucket's name under this prefix (`LB_AGENTS`, `LB_AGENTS_<PREFIX>`), like the stream's."""
        return base if self.prefix == "lb" else f"{base}_{self.prefix.upper()}"

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
