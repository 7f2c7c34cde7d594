"""Fixtures for the crypto tests: a federation kit, a running key holder, clients that contribute."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from secure_mor import protocol as pb
from secure_mor.config import load_config
from secure_mor.crypto.ckks import CkksParams, PublicContext, SecretContext
from secure_mor.crypto.keyholder import RunningKeyholder, start_keyholder
from secure_mor.crypto.keyholder_config import KeyholderConfig
from secure_mor.crypto.kit import TlsFiles, load_trust
from secure_mor.crypto.provision import Federation, create_federation
from secure_mor.crypto.signing import SigningKey
from secure_mor.crypto.transport import secure_channel
from secure_mor.crypto.wire import decrypt_request, public_context_from_proto, sign_contribution

CLIENTS = ("alice", "bob", "carol")


@pytest.fixture(scope="session")
def secret() -> SecretContext:
    """One CKKS key pair for the primitive tests (default parameters)."""
    return SecretContext.generate(CkksParams())


@pytest.fixture(scope="session")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return create_federation(tmp_path_factory.mktemp("kit") / "fed", CLIENTS)


@pytest.fixture(scope="session")
def foreign_federation(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    """Another federation: same identities, another CA and other keys."""
    return create_federation(tmp_path_factory.mktemp("foreign") / "fed", CLIENTS)


def keyholder_config(federation: Federation, state: Path, **policy: object) -> KeyholderConfig:
    config = load_config(KeyholderConfig, federation.root / "keyholder" / "keyholder.toml")
    return dataclasses.replace(
        config,
        service=dataclasses.replace(config.service, listen="127.0.0.1:0", max_message_bytes=2 * 1024 * 1024),
        policy=dataclasses.replace(config.policy, **policy),  # type: ignore[arg-type]
        storage=dataclasses.replace(
            config.storage,
            secret_context=state / "ckks" / "secret.bin",
            decryption_log=state / "logs" / "decryptions.jsonl",
            service_log=state / "logs" / "service.log",
        ),
    )


@pytest.fixture
def keyholder(federation: Federation, tmp_path: Path) -> Iterator[RunningKeyholder]:
    running = start_keyholder(keyholder_config(federation, tmp_path))
    yield running
    running.stop(None)


def kit_tls(root: Path, party: str) -> TlsFiles:
    folder = root / party
    return TlsFiles(ca=folder / "tls/ca.crt", cert=folder / "tls/party.crt", key=folder / "tls/party.key")


def stub_for(federation: Federation, party: str, port: int) -> pb.KeyHolderStub:
    """A key holder stub on a fresh mTLS channel, as ``party`` (e.g. "server", "clients/alice")."""
    channel = secure_channel(f"127.0.0.1:{port}", kit_tls(federation.root, party), 8 * 1024 * 1024)
    return pb.keyholder_stub(channel)


def client_key(federation: Federation, name: str) -> SigningKey:
    return SigningKey.load(f"client:{name}", federation.root / "clients" / name / "signing" / "ed25519.key")


def fetch_public(federation: Federation, port: int) -> PublicContext:
    """What a client does: fetch the public context and verify it against its pinned key holder key."""
    message = stub_for(federation, "clients/alice", port).GetPublicContext(
        pb.GetPublicContextRequest(), timeout=10
    )
    pinned = load_trust(federation.root / "clients" / "alice" / "trust.toml")["keyholder"]
    return public_context_from_proto(message).verify(pinned)


def make_request(
    federation: Federation,
    public: PublicContext,
    step_id: str,
    scores: np.ndarray,
    weights: np.ndarray,
    names: tuple[str, ...] = CLIENTS,
) -> pb.DecryptAggregateRequest:
    """Clients encrypt and sign; the server fuses with ``weights`` (K, N) and builds the request."""
    vectors = [public.encrypt(row) for row in scores]
    contributions = [
        sign_contribution(client_key(federation, name), step_id, vector)
        for name, vector in zip(names, vectors, strict=True)
    ]
    return decrypt_request(step_id, public.weighted_sum(vectors, weights), contributions, weights)


def uniform(k: int, n: int) -> np.ndarray:
    return np.full((k, n), 1.0 / k)
