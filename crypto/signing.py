"""Ed25519 signing keys with their role in their type, canonical encodings and the signed messages.

A ``SigningKey`` holds a private key: it signs, it can be written to a 0600 file, and it never appears
in a ``repr``, a log or a pickle. A ``VerifyKey`` is its public half, travels as base64 text (trust
files pin these) and only verifies. Every signed message starts with a domain tag, so a signature made
for one purpose (a contribution, a public context, a log entry) never verifies as another.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from secure_mor.crypto.errors import CryptoError, SignatureError

CONTRIBUTION_DOMAIN = b"secure-mor/contribution/v1\n"
PUBLIC_CONTEXT_DOMAIN = b"secure-mor/public-context/v1\n"
LOG_ENTRY_DOMAIN = b"secure-mor/signed-log/v1\n"
LEDGER_HEAD_DOMAIN = b"secure-mor/ledger-head/v1\n"


def canonical_json(value: Any) -> bytes:
    """Encode ``value`` as the canonical JSON that signatures and hashes cover (sorted keys, ASCII)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode()


def sha256(data: bytes) -> bytes:
    """Return the SHA-256 digest of ``data``."""
    return hashlib.sha256(data).digest()


def contribution_message(step_id: str, ciphertext_digest: bytes) -> bytes:
    """Return what a client signs for a step: domain tag, length-prefixed step id, ciphertext digest."""
    step = step_id.encode("utf-8")
    return CONTRIBUTION_DOMAIN + len(step).to_bytes(4, "big") + step + ciphertext_digest


def ledger_head_message(identity: str, seq: int, entry_hash: str) -> bytes:
    """Return what a client signs to announce its privacy ledger's head (last entry's seq and hash).

    The identity is inside the signed bytes, so one client's announcement never verifies as another's.
    """
    return LEDGER_HEAD_DOMAIN + canonical_json({"entry_hash": entry_hash, "identity": identity, "seq": seq})


@dataclass(frozen=True)
class VerifyKey:
    """A pinned Ed25519 public key; ``identity`` names the party it belongs to."""

    identity: str
    key: Ed25519PublicKey

    @classmethod
    def from_text(cls, identity: str, text: str) -> VerifyKey:
        """Parse the base64 raw public key of ``identity`` as written in a trust file."""
        try:
            raw = base64.b64decode(text, validate=True)
            return cls(identity, Ed25519PublicKey.from_public_bytes(raw))
        except (binascii.Error, ValueError):
            raise CryptoError(
                f"signing key of {identity!r}: expected base64 of 32 raw Ed25519 bytes, found {text[:60]!r}"
            ) from None

    def to_text(self) -> str:
        """Encode the raw public key as base64 (what trust files contain)."""
        raw = self.key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return base64.b64encode(raw).decode()

    def verify(self, signature: bytes, message: bytes) -> bool:
        """Whether ``signature`` is this key's valid signature over ``message``."""
        try:
            self.key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def require(self, signature: bytes, message: bytes, what: str) -> None:
        """Raise ``SignatureError`` unless ``signature`` verifies; ``what`` names the signed object."""
        if not self.verify(signature, message):
            raise SignatureError(
                f"{what}: the signature does not verify against the pinned key of {self.identity!r}"
            )


class SigningKey:
    """A private Ed25519 key of one party. Not printable, not picklable; saved only as a 0600 file."""

    __slots__ = ("_key", "identity")

    def __init__(self, identity: str, key: Ed25519PrivateKey) -> None:
        self.identity = identity
        self._key = key

    @classmethod
    def generate(cls, identity: str) -> SigningKey:
        """Generate a fresh key for ``identity``."""
        return cls(identity, Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, identity: str, path: Path) -> SigningKey:
        """Read a PKCS#8 PEM private key written by ``save``."""
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except FileNotFoundError:
            raise CryptoError(f"signing key not found: {path}") from None
        except ValueError:
            raise CryptoError(f"{path}: not a PEM private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise CryptoError(f"{path}: expected an Ed25519 private key, found {type(key).__name__}")
        return cls(identity, key)

    def save(self, path: Path) -> None:
        """Write the key as unencrypted PKCS#8 PEM to a new file with mode 0600."""
        pem = self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        write_private(path, pem)

    @property
    def public(self) -> VerifyKey:
        """The public half, to pin in other parties' trust files."""
        return VerifyKey(self.identity, self._key.public_key())

    def sign(self, message: bytes) -> bytes:
        """Sign ``message`` with Ed25519; return the signature over ``message``."""
        return self._key.sign(message)

    def __repr__(self) -> str:
        return f"SigningKey(identity={self.identity!r}, <private>)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a SigningKey holds a private key and cannot be pickled or sent")


def write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 (never wider, whatever the umask) and write ``data`` to it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
