"""CKKS primitives: parameters, key roles, fingerprints, signatures, chunking and fusion accuracy."""

from __future__ import annotations

import pickle
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tenseal as ts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secure_mor.crypto.ckks import MAX_BITS_128, CkksParams, PublicContext, SecretContext
from secure_mor.crypto.errors import ContextMismatchError, CryptoError, ParameterError, SignatureError
from secure_mor.crypto.signing import SigningKey

TOLERANCE = 1e-5


def fuse_and_check(secret: SecretContext, k: int, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.random((k, n))  # (K, N) rewards in [0, 1]
    weights = rng.dirichlet(np.ones(k), n).T  # (K, N), columns sum to 1
    public = secret.public
    fused = public.weighted_sum([public.encrypt(row) for row in scores], weights)
    np.testing.assert_allclose(secret.decrypt(fused), (weights * scores).sum(axis=0), atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize(("k", "n"), [(1, 8192), (4, 4097), (16, 1024)])
def test_fused_values_match_the_plaintext_weighted_sum(secret: SecretContext, k: int, n: int) -> None:
    fuse_and_check(secret, k, n, seed=k)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(k=st.integers(1, 16), n=st.integers(1, 300), seed=st.integers(0, 2**16))
def test_fusion_is_accurate_for_every_k(secret: SecretContext, k: int, n: int, seed: int) -> None:
    fuse_and_check(secret, k, n, seed)


@pytest.mark.parametrize(
    ("n", "bits", "scale"),
    [(8192, (60, 40, 40, 60), 40), (4096, (40, 20, 40), 20), (16384, (60, 50, 50, 50, 60), 50)],
)
def test_parameters_within_the_bound_are_accepted(n: int, bits: tuple[int, ...], scale: int) -> None:
    params = CkksParams(n, bits, scale)
    assert params.total_bits <= MAX_BITS_128[n]
    assert params.slots == n // 2


@pytest.mark.parametrize(
    ("n", "bits", "scale", "message"),
    [
        (8192, (60, 40, 40, 40, 60), 40, "exceed 218, the 128-bit security bound"),
        (4096, (60, 40, 40), 40, "exceed 109"),
        (8192, (60, 40), 40, "at least 3 primes"),
        (3000, (60, 40, 60), 40, "poly_modulus_degree"),
        (8192, (60, 30, 60), 40, "scale_bits"),
    ],
)
def test_parameters_beyond_the_bound_are_refused(
    n: int, bits: tuple[int, ...], scale: int, message: str
) -> None:
    with pytest.raises(ParameterError, match=message):
        CkksParams(n, bits, scale)


def test_the_public_context_holds_no_secret_galois_or_relinearisation_keys(secret: SecretContext) -> None:
    loaded = ts.context_from(secret.public.data)
    assert not loaded.has_secret_key()
    assert not loaded.has_galois_keys()
    assert not loaded.has_relin_keys()
    assert len(secret.public.data) <= 1_000_000


def test_decrypting_through_the_public_context_is_impossible(secret: SecretContext) -> None:
    public = secret.public
    assert not hasattr(public, "decrypt")
    vector = public.encrypt([0.25, 0.5])
    raw = ts.ckks_vector_from(ts.context_from(public.data), vector.chunks[0])
    with pytest.raises(ValueError, match="secret_key"):
        raw.decrypt()


def test_a_ciphertext_under_another_context_is_refused_not_decrypted(secret: SecretContext) -> None:
    other = SecretContext.generate(CkksParams())
    foreign = other.public.encrypt([0.5, 0.5])
    with pytest.raises(ContextMismatchError, match="another key"):
        secret.decrypt(foreign)
    with pytest.raises(ContextMismatchError):
        secret.public.weighted_sum([foreign, secret.public.encrypt([1.0, 1.0])], np.full((2, 2), 0.5))


def test_a_public_context_signed_by_the_wrong_key_is_refused(secret: SecretContext) -> None:
    keyholder = SigningKey.generate("keyholder")
    signed = secret.sign_public(keyholder)
    assert signed.verify(keyholder.public).fingerprint == secret.public.fingerprint
    impostor = SigningKey.generate("keyholder")
    impostor_signed = secret.sign_public(impostor)
    with pytest.raises(SignatureError, match="does not verify"):
        impostor_signed.verify(keyholder.public)
    tampered = type(signed)(
        signed.data + b"x", signed.fingerprint, signed.params, signed.signer, signed.signature
    )
    with pytest.raises(CryptoError, match="fingerprint"):
        tampered.verify(keyholder.public)


def test_vectors_of_any_length_are_chunked_by_slot_count(secret: SecretContext) -> None:
    public = secret.public
    assert len(public.encrypt(np.ones(4096)).chunks) == 1  # one ciphertext per client per step up to 4,096
    assert len(public.encrypt(np.ones(4097)).chunks) == 2
    np.testing.assert_allclose(
        secret.decrypt(public.encrypt(np.arange(5000) / 5000)), np.arange(5000) / 5000, atol=1e-6
    )
    bads: list[Any] = [[], [[1.0]], [float("nan")]]
    for bad in bads:
        with pytest.raises(CryptoError):
            public.encrypt(bad)


def test_malformed_or_truncated_chunks_are_refused(secret: SecretContext) -> None:
    vector = secret.public.encrypt([0.5] * 10)
    for chunks in ((vector.chunks[0][:100],), (b"garbage",), vector.chunks * 2):
        with pytest.raises(CryptoError):
            secret.decrypt(type(vector)(vector.fingerprint, vector.length, chunks))


def test_secrets_cannot_be_pickled_and_do_not_print(secret: SecretContext) -> None:
    key = SigningKey.generate("keyholder")
    for obj in (secret, key):
        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(obj)
    assert "<secret key>" in repr(secret)
    assert "<private>" in repr(key)


def test_secret_context_round_trips_through_a_0600_file(secret: SecretContext, tmp_path: Path) -> None:
    path = tmp_path / "ckks" / "secret.bin"
    secret.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = SecretContext.load(path, CkksParams())
    assert loaded.public.fingerprint == secret.public.fingerprint
    assert loaded.decrypt(secret.public.encrypt([0.125]))[0] == pytest.approx(0.125, abs=1e-6)
    path.chmod(0o644)
    with pytest.raises(CryptoError, match="chmod 600"):
        SecretContext.load(path, CkksParams())


def test_a_public_context_is_refused_if_it_carries_a_secret(secret: SecretContext) -> None:
    ctx = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=8192, coeff_mod_bit_sizes=[60, 40, 40, 60])
    with pytest.raises(CryptoError, match="no secret"):
        PublicContext(ctx.serialize(save_secret_key=True), CkksParams())


def test_a_context_whose_moduli_differ_from_its_parameters_is_refused(tmp_path: Path) -> None:
    other = SecretContext.generate(CkksParams(8192, (60, 40, 60), 40))
    with pytest.raises(ParameterError, match=r"moduli \[60, 40, 60\]"):
        PublicContext(other.public.data, CkksParams())
    other.save(tmp_path / "secret.bin")
    with pytest.raises(ParameterError, match="keys were made for other CKKS parameters"):
        SecretContext.load(tmp_path / "secret.bin", CkksParams())
