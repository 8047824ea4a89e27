"""Identities: one NATS user nkey per agent type (and per orchestrator/recorder/admin), and envelope signatures.

The same ed25519 key does two jobs. The server authenticates the connection with it (nkey challenge), and
ledgerbus signs every envelope with it (header `Lb-Sig`), so whoever reads the ledger can check that the
`sender` field names the key's owner. NATS subjects here do not carry the sender, and the server does not
stamp the publisher's identity on a message, so the signature is what binds `sender` to a user.

The signature covers the subject and the body (format v2, `Lb-Sig: v2.<base64>`): a genuine envelope
re-published on another subject — to another recipient or conversation — no longer verifies. A v1
signature (the body only, plain base64) is recognised as such and refused.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass

import nacl.exceptions
import nacl.signing
import nkeys

from ledgerbus.errors import ConfigError

SIG_HEADER = "Lb-Sig"
SIG_VERSION = "v2"
_V2 = SIG_VERSION + "."


def _b32decode(text: str) -> bytes:
    return base64.b32decode(text + "=" * (-len(text) % 8))


@dataclass(frozen=True)
class Identity:
    """A named key pair: `seed` (secret, "SU…") and `public` (the NATS user nkey, "U…")."""

    name: str
    seed: str
    public: str

    @classmethod
    def generate(cls, name: str) -> "Identity":
        seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER).decode()
        return cls.from_seed(name, seed)

    @classmethod
    def from_seed(cls, name: str, seed: str) -> "Identity":
        try:
            kp = nkeys.from_seed(seed.strip().encode())
        except nkeys.NkeysError as exc:
            raise ConfigError(f"the seed for {name!r} is not a valid nkey seed: {exc}") from None
        return cls(name=name, seed=seed.strip(), public=kp.public_key.decode())

    def sign(self, data: bytes) -> str:
        """Base64 ed25519 signature of `data`."""
        kp = nkeys.from_seed(self.seed.encode())
        return base64.b64encode(kp.sign(data)).decode()

    def sign_envelope(self, subject: str, data: bytes) -> str:
        """The value of the `Lb-Sig` header for `data` published on `subject`."""
        return _V2 + self.sign(signed_bytes(subject, data))

    def signature_headers(self, subject: str, payload: bytes) -> dict[str, str]:
        """The bus's Signer: the `Lb-Sig` header of `payload` appended on `subject`."""
        return {SIG_HEADER: self.sign_envelope(subject, payload)}


def signed_bytes(subject: str, data: bytes) -> bytes:
    """What a v2 signature covers: a version tag, the subject (no whitespace in NATS subjects) and the body."""
    return b"lb-sig/v2\n" + subject.encode() + b"\n" + data


def envelope_signature_problem(public: str | nacl.signing.VerifyKey, subject: str, data: bytes,
                               header: str) -> str | None:
    """Why `header` is not `public`'s signature of `data` on `subject` (None when it is)."""
    if header.startswith(_V2):
        if signature_valid(public, signed_bytes(subject, data), header[len(_V2):]):
            return None
        return f"its {SIG_HEADER} signature does not cover this body on subject {subject}"
    if signature_valid(public, data, header):
        return (f"its {SIG_HEADER} signature is an old (v1) one, over the body only; "
                f"{SIG_VERSION} signatures cover the subject too")
    return f"its {SIG_HEADER} signature is not a {SIG_VERSION} signature by that key"


def verify_key(public: str) -> nacl.signing.VerifyKey:
    """The ed25519 verify key inside a NATS user nkey ("U…": prefix byte, 32 key bytes, crc16)."""
    try:
        raw = _b32decode(public)
    except ValueError:
        raise ConfigError(f"{public!r} is not a base32 nkey") from None
    if len(raw) != 35 or raw[0] != nkeys.PREFIX_BYTE_USER:
        raise ConfigError(f"{public!r} is not a NATS user public key")
    return nacl.signing.VerifyKey(raw[1:33])


def signature_valid(public: str | nacl.signing.VerifyKey, data: bytes, signature: str) -> bool:
    key = verify_key(public) if isinstance(public, str) else public
    try:
        key.verify(data, base64.b64decode(signature, validate=True))
    except (nacl.exceptions.BadSignatureError, ValueError):
        return False
    return True
