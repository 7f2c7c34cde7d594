"""Fusion on real TenSEAL ciphertexts, decrypted by a real key holder over mTLS: only the fusion returns."""

from __future__ import annotations

import numpy as np
import pytest

from secure_mor.crypto.keyholder import RunningKeyholder
from secure_mor.crypto.provision import Federation
from secure_mor.crypto.wire import sign_contribution
from secure_mor.server.fusion import DecryptionRefusedError, EncryptedScores, SecureFusion
from secure_mor.server.routing import cap_weights

from ..crypto.conftest import CLIENTS, client_key, fetch_public, stub_for


def encrypted_scores(
    federation: Federation, port: int, step_id: str, scores: np.ndarray
) -> list[EncryptedScores]:
    public = fetch_public(federation, port)
    answers = []
    for name, row in zip(CLIENTS, scores, strict=True):
        vector = public.encrypt(row)
        answers.append(
            EncryptedScores(
                f"client:{name}", vector, sign_contribution(client_key(federation, name), step_id, vector)
            )
        )
    return answers


def test_fused_rewards_equal_the_plaintext_weighted_sum(
    federation: Federation, keyholder: RunningKeyholder
) -> None:
    rng = np.random.default_rng(0)
    scores = rng.random((3, 24))  # (K, N): each client's scores for 24 rollouts
    weights = cap_weights(rng.dirichlet(np.ones(3), size=24), 0.75)  # (N, K)
    fusion = SecureFusion(
        fetch_public(federation, keyholder.port), stub_for(federation, "server", keyholder.port)
    )
    fused = fusion.fuse(
        "run-1:step-0", encrypted_scores(federation, keyholder.port, "run-1:step-0", scores), weights
    )
    np.testing.assert_allclose(fused.values, (weights * scores.T).sum(axis=1), atol=1e-5)
    assert fused.contributors == tuple(f"client:{c}" for c in CLIENTS)
    assert fused.log_seq >= 0


def test_fusion_accepts_only_ciphertexts(federation: Federation, keyholder: RunningKeyholder) -> None:
    fusion = SecureFusion(
        fetch_public(federation, keyholder.port), stub_for(federation, "server", keyholder.port)
    )
    with pytest.raises(TypeError, match="fusion takes EncryptedScores"):
        fusion.fuse("s", [np.array([0.5, 0.5])], np.ones((2, 1)))  # type: ignore[list-item]


def test_a_refusal_reaches_the_server_as_an_error(
    federation: Federation, keyholder: RunningKeyholder
) -> None:
    fusion = SecureFusion(
        fetch_public(federation, keyholder.port), stub_for(federation, "server", keyholder.port)
    )
    answers = encrypted_scores(federation, keyholder.port, "s-2", np.full((3, 4), 0.5))
    with pytest.raises(DecryptionRefusedError, match="FAILED_PRECONDITION"):
        fusion.fuse("s-2", answers[:1], np.ones((4, 1)))  # one contributor < k_min = 2
