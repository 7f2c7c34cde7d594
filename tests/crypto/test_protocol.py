"""The committed gRPC stubs are exactly what grpcio-tools generates from the committed .proto."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from secure_mor import protocol
from secure_mor.crypto.ckks import SecretContext
from secure_mor.crypto.errors import CryptoError
from secure_mor.crypto.signing import SigningKey, contribution_message
from secure_mor.crypto.wire import (
    public_context_from_proto,
    public_context_to_proto,
    sign_contribution,
    vector_from_proto,
    vector_to_proto,
    weight_summary,
)

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ("federation_pb2.py", "federation_pb2.pyi", "federation_pb2_grpc.py")


def test_messages_round_trip() -> None:
    request = protocol.DecryptAggregateRequest(
        step_id="s",
        aggregate=protocol.EncryptedVector(context_fingerprint=b"f" * 32, length=3, chunks=[b"abc"]),
        contributors=[
            protocol.Contribution(identity="client:a", ciphertext_digest=b"d" * 32, signature=b"s")
        ],
        weights=protocol.WeightSummary(max_weight=0.5, min_row_sum=1, max_row_sum=1),
        count=3,
    )
    assert protocol.DecryptAggregateRequest.FromString(request.SerializeToString()) == request


def test_crypto_wire_conversions_round_trip(secret: SecretContext) -> None:
    vector = secret.public.encrypt(np.linspace(0, 1, 10))
    message = protocol.EncryptedVector.FromString(vector_to_proto(vector).SerializeToString())
    assert vector_from_proto(message) == vector
    key = SigningKey.generate("keyholder")
    signed = secret.sign_public(key)
    wire = protocol.PublicContext.FromString(public_context_to_proto(signed).SerializeToString())
    assert public_context_from_proto(wire) == signed
    assert public_context_from_proto(wire).verify(key.public).fingerprint == secret.public.fingerprint


def test_contributions_and_weight_summaries_are_what_the_policy_reads(secret: SecretContext) -> None:
    key = SigningKey.generate("client:a")
    vector = secret.public.encrypt([0.5, 0.25])
    contribution = sign_contribution(key, "step-3", vector)
    assert contribution.identity == "client:a"
    assert key.public.verify(contribution.signature, contribution_message("step-3", vector.digest()))
    assert not key.public.verify(contribution.signature, contribution_message("step-4", vector.digest()))
    summary = weight_summary(np.array([[0.6, 0.5], [0.4, 0.5]]))
    assert (summary.max_weight, summary.min_row_sum, summary.max_row_sum) == pytest.approx((0.6, 1.0, 1.0))
    with pytest.raises(CryptoError, match=r"shape \(K, N\)"):
        weight_summary(np.ones(3))
    with pytest.raises(CryptoError, match="32 bytes"):
        vector_from_proto(protocol.EncryptedVector(context_fingerprint=b"short"))
