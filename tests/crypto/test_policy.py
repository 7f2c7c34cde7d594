"""The decryption policy on hostile input (hypothesis), and the crypto role boundary."""

from __future__ import annotations

import ast
from pathlib import Path

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secure_mor import protocol as pb
from secure_mor.crypto.ckks import EncryptedVector, SecretContext
from secure_mor.crypto.errors import CryptoError, PolicyRefusal, SignatureError
from secure_mor.crypto.keyholder import RunningKeyholder
from secure_mor.crypto.keyholder_config import PolicyConfig
from secure_mor.crypto.kit import load_trust
from secure_mor.crypto.policy import check_request
from secure_mor.crypto.provision import Federation
from secure_mor.crypto.signing import SigningKey
from secure_mor.crypto.wire import public_context_from_proto

from .conftest import stub_for

ROOT = Path(__file__).resolve().parents[2]
PINNED = {
    "client:a": SigningKey.generate("client:a").public,
    "client:b": SigningKey.generate("client:b").public,
}

contributions = st.builds(
    pb.Contribution,
    identity=st.sampled_from(["client:a", "client:b", "server", "x", ""]),
    ciphertext_digest=st.binary(max_size=40),
    signature=st.binary(max_size=70),
)
requests = st.builds(
    pb.DecryptAggregateRequest,
    step_id=st.text(max_size=200),
    aggregate=st.builds(
        pb.EncryptedVector,
        context_fingerprint=st.sampled_from([b"f" * 32, b"", b"g" * 32, b"f" * 31]),
        length=st.integers(0, 2**40),
        chunks=st.lists(st.binary(max_size=64), max_size=3),
    ),
    contributors=st.lists(contributions, max_size=4),
    weights=st.builds(
        pb.WeightSummary,
        max_weight=st.floats(allow_nan=True, allow_infinity=True),
        min_row_sum=st.floats(allow_nan=True),
        max_row_sum=st.floats(allow_nan=True),
    ),
    count=st.integers(0, 2**40),
)


@settings(max_examples=300, deadline=None)
@given(request=requests)
def test_hostile_requests_are_refused_with_a_policy_refusal_only(request: pb.DecryptAggregateRequest) -> None:
    with pytest.raises(PolicyRefusal) as info:
        check_request(
            request, policy=PolicyConfig(), fingerprint=b"f" * 32, slots=4096, pinned=PINNED, decrypted={"s"}
        )
    assert info.value.code in grpc.StatusCode.__members__


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunk=st.binary(min_size=0, max_size=2048), length=st.integers(1, 4096))
def test_random_ciphertext_bytes_raise_a_crypto_error(
    secret: SecretContext, chunk: bytes, length: int
) -> None:
    with pytest.raises(CryptoError):
        secret.decrypt(EncryptedVector(secret.public.fingerprint, length, (chunk,)))


def test_a_client_refuses_a_public_context_signed_by_another_key(
    federation: Federation, foreign_federation: Federation, keyholder: RunningKeyholder
) -> None:
    message = stub_for(federation, "clients/alice", keyholder.port).GetPublicContext(
        pb.GetPublicContextRequest(), timeout=10
    )
    wrong = load_trust(foreign_federation.root / "clients" / "alice" / "trust.toml")["keyholder"]
    with pytest.raises(SignatureError, match="does not verify"):
        public_context_from_proto(message).verify(wrong)  # so the client never gets a context to encrypt with
    right = load_trust(federation.root / "clients" / "alice" / "trust.toml")["keyholder"]
    assert np.isfinite(public_context_from_proto(message).verify(right).encrypt([0.5]).length)


def test_crypto_imports_neither_client_nor_server() -> None:
    for path in (ROOT / "crypto").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(("secure_mor.client", "secure_mor.server")), (
                    f"{path}: imports {name}"
                )
