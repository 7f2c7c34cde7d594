"""Startup kits: ``secure-mor init`` writes a CA and one folder per party, like a federation's kit.

Layout of ``DIR`` (directories 0700, private keys 0600)::

    ca/ca.crt, ca/ca.key           the federation CA; keep ca.key offline (it is in no kit)
    server/  keyholder/  clients/<name>/
        tls/ca.crt                 the CA certificate every party trusts for mTLS
        tls/party.crt, party.key   this party's ECDSA P-256 certificate and key (CN = identity)
        signing/ed25519.key, .pub  this party's Ed25519 signing key pair
        trust.toml                 the Ed25519 public keys this party pins, by identity
        <role>.toml                its config: a [federation] table (every role) + the role's tables

Who pins whom: clients pin the key holder (its signature on the public context) and the server;
the server pins the key holder and every client; the key holder pins the server and every client
(their signatures over each step's ciphertext digest).
"""

from __future__ import annotations

import re
import shutil
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from secure_mor.config import help_field, nested
from secure_mor.crypto.errors import KitError
from secure_mor.crypto.signing import VerifyKey

SERVER_IDENTITY = "server"
KEYHOLDER_IDENTITY = "keyholder"
CLIENT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
KIT_ENTRIES = ("ca", "server", "keyholder", "clients")


def client_identity(name: str) -> str:
    """Return the certificate CN and signing identity of client ``name``: ``client:<name>``."""
    if not CLIENT_NAME.match(name):
        raise KitError(
            f"client name {name!r}: expected 1–32 characters of a-z, 0-9, '-' or '_', "
            "starting with a letter or digit"
        )
    return f"client:{name}"


@dataclass(frozen=True)
class TlsFiles:
    """The PEM files of one party's mTLS identity."""

    ca: Path = help_field(Path("tls/ca.crt"), "The federation CA certificate (trust anchor for peers).")
    cert: Path = help_field(Path("tls/party.crt"), "This party's certificate (CN = its identity).")
    key: Path = help_field(Path("tls/party.key"), "This party's private key (mode 0600).")


@dataclass(frozen=True)
class FederationConfig:
    """The ``[federation]`` table every kit config has: who this party is and where its peers are."""

    identity: str = help_field("", "This party's identity: its certificate CN and log author name.")
    server_address: str = help_field("localhost:50050", "host:port of the server's gRPC endpoint.")
    keyholder_address: str = help_field("localhost:50051", "host:port of the key holder's gRPC endpoint.")
    tls: TlsFiles = nested(TlsFiles, "mTLS certificate, key and CA files.")
    signing_key: Path = help_field(Path("signing/ed25519.key"), "This party's Ed25519 private key (0600).")
    trust: Path = help_field(Path("trust.toml"), "Pinned Ed25519 public keys of the parties it trusts.")


def load_trust(path: Path) -> dict[str, VerifyKey]:
    """Read the pinned signing keys of a ``trust.toml`` (``[signing_keys]``: identity = base64 key)."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KitError(f"trust file not found: {path}") from None
    except tomllib.TOMLDecodeError as error:
        raise KitError(f"{path}: not valid TOML: {error}") from None
    keys = document.get("signing_keys")
    if not isinstance(keys, Mapping) or not all(isinstance(v, str) for v in keys.values()):
        raise KitError(f'{path}: expected a [signing_keys] table of identity = "base64 key" strings')
    return {identity: VerifyKey.from_text(identity, text) for identity, text in keys.items()}


def prepare_directory(out: Path, force: bool) -> None:
    """Refuse to overwrite an existing kit unless ``force``; with it, remove the old kit's folders."""
    existing = [name for name in KIT_ENTRIES if (out / name).exists()]
    if existing and not force:
        raise KitError(
            f"{out} already holds a federation kit ({', '.join(existing)}); pass --force to replace it "
            "(its keys, certificates and logs are deleted)"
        )
    if out.exists() and not out.is_dir():
        raise KitError(f"{out} exists and is not a directory")
    for name in existing:
        shutil.rmtree(out / name)
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
