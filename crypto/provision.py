"""``secure-mor init``: issue the federation CA and write every party's startup kit (see ``kit``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from secure_mor.crypto import pki
from secure_mor.crypto.errors import KitError
from secure_mor.crypto.keyholder_config import PolicyConfig, ServiceConfig, StorageConfig
from secure_mor.crypto.kit import (
    KEYHOLDER_IDENTITY,
    SERVER_IDENTITY,
    TlsFiles,
    client_identity,
    prepare_directory,
)
from secure_mor.crypto.signing import SigningKey, VerifyKey, write_private

LOOPBACK = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class PartyKit:
    """One written kit: who it is for and where it lies (no key material)."""

    identity: str
    folder: Path
    config: Path
    expires: dt.datetime


@dataclass(frozen=True)
class Federation:
    """What ``create_federation`` wrote."""

    root: Path
    ca_cert: Path
    parties: tuple[PartyKit, ...]


def _hosts(hosts: Sequence[str]) -> tuple[str, ...]:
    out = [h.strip() for h in hosts if h.strip()]
    if not out:
        raise KitError("a host list is empty: give at least one host name or address")
    if "localhost" in out:
        out += [h for h in LOOPBACK if h not in out]
    return tuple(out)


def create_federation(
    out: Path,
    clients: Sequence[str],
    *,
    server_hosts: Sequence[str] = ("localhost",),
    keyholder_hosts: Sequence[str] = ("localhost",),
    server_port: int = 50050,
    keyholder_port: int = 50051,
    force: bool = False,
) -> Federation:
    """Issue a CA and write the server's, the key holder's and each client's kit under ``out``."""
    identities = [client_identity(name) for name in clients]
    if not identities or len(set(identities)) != len(identities):
        raise KitError(f"--clients: expected one or more distinct names, found {list(clients)}")
    s_hosts, k_hosts = _hosts(server_hosts), _hosts(keyholder_hosts)
    prepare_directory(out, force)
    ca = pki.create_ca()
    (out / "ca").mkdir(mode=0o700)
    (out / "ca" / "ca.crt").write_bytes(ca.cert_pem)
    write_private(out / "ca" / "ca.key", ca.key_pem)
    signing = {i: SigningKey.generate(i) for i in [SERVER_IDENTITY, KEYHOLDER_IDENTITY, *identities]}
    public = {i: key.public for i, key in signing.items()}
    addresses = {
        "server_address": f"{s_hosts[0]}:{server_port}",
        "keyholder_address": f"{k_hosts[0]}:{keyholder_port}",
    }
    client_trust = {SERVER_IDENTITY: public[SERVER_IDENTITY], KEYHOLDER_IDENTITY: public[KEYHOLDER_IDENTITY]}
    policy = PolicyConfig(allowed_identities=(SERVER_IDENTITY, *identities))
    keyholder_tables = {
        "service": {**_plain(ServiceConfig()), "listen": f"0.0.0.0:{keyholder_port}"},
        "policy": _plain(policy),
        "ckks": {"poly_modulus_degree": 8192, "coeff_mod_bit_sizes": [60, 40, 40, 60], "scale_bits": 40},
        "storage": _plain(StorageConfig()),
    }
    parties = [
        _write_kit(
            out / "server",
            ca,
            signing[SERVER_IDENTITY],
            _others(public, SERVER_IDENTITY),
            "server",
            s_hosts,
            True,
            True,
            addresses,
            # The server's own tables live in secure_mor.server.config; the kit names the federation's
            # clients and the service port so that `secure-mor server …` runs on this kit as written.
            {"service": {"listen": f"0.0.0.0:{server_port}"}, "run": {"clients": list(clients)}},
        ),
        _write_kit(
            out / "keyholder",
            ca,
            signing[KEYHOLDER_IDENTITY],
            _others(public, KEYHOLDER_IDENTITY),
            "keyholder",
            k_hosts,
            True,
            False,
            addresses,
            keyholder_tables,
        ),
    ]
    (out / "clients").mkdir(mode=0o700)
    for name, identity in zip(clients, identities, strict=True):
        parties.append(
            _write_kit(out / "clients" / name, ca, signing[identity], client_trust, "client", (), False, True,
                       addresses, {})
        )  # fmt: skip
    return Federation(out, out / "ca" / "ca.crt", tuple(parties))


def _others(public: dict[str, VerifyKey], me: str) -> dict[str, VerifyKey]:
    return {identity: key for identity, key in public.items() if identity != me}


def _write_kit(
    folder: Path,
    ca: pki.Issued,
    key: SigningKey,
    trust: dict[str, VerifyKey],
    role: str,
    hosts: tuple[str, ...],
    server_auth: bool,
    client_auth: bool,
    addresses: dict[str, str],
    tables: dict[str, Any],
) -> PartyKit:
    folder.mkdir(parents=True, mode=0o700)
    issued = pki.issue(ca, key.identity, hosts=hosts, server_auth=server_auth, client_auth=client_auth)
    tls = TlsFiles()
    (folder / "tls").mkdir(mode=0o700)
    (folder / tls.ca).write_bytes(ca.cert_pem)
    (folder / tls.cert).write_bytes(issued.cert_pem)
    write_private(folder / tls.key, issued.key_pem)
    key.save(folder / "signing" / "ed25519.key")
    (folder / "signing" / "ed25519.pub").write_text(key.public.to_text() + "\n")
    header = "# Ed25519 public signing keys this party pins (base64 of the raw 32 bytes), by identity.\n"
    (folder / "trust.toml").write_text(
        header + tomli_w.dumps({"signing_keys": {i: k.to_text() for i, k in sorted(trust.items())}})
    )
    federation = {
        "identity": key.identity,
        **addresses,
        "tls": {"ca": str(tls.ca), "cert": str(tls.cert), "key": str(tls.key)},
        "signing_key": "signing/ed25519.key",
        "trust": "trust.toml",
    }
    config = folder / f"{role}.toml"
    note = f"# secure-mor {role} kit for {key.identity!r}; relative paths resolve against this folder.\n"
    config.write_text(note + tomli_w.dumps({"federation": federation, **tables}))
    expires = pki.expiry(issued.cert_pem)
    return PartyKit(key.identity, folder, config, expires)


def _plain(config: Any) -> dict[str, Any]:
    """Turn a flat config dataclass into TOML values (paths as strings, tuples as lists)."""
    out: dict[str, Any] = {}
    for name, value in vars(config).items():
        out[name] = (
            str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value
        )
    return out
