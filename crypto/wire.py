"""Conversions between the crypto types and the wire messages of ``secure_mor.protocol``.

Inputs are checked here, at the wire boundary: a message that does not fit raises a ``CryptoError``
that names the field, the expected and the found value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from secure_mor import protocol as pb
from secure_mor.crypto.ckks import CkksParams, EncryptedVector, SignedPublicContext
from secure_mor.crypto.errors import CryptoError
from secure_mor.crypto.signing import SigningKey, contribution_message


def vector_to_proto(vector: EncryptedVector) -> pb.EncryptedVector:
    """Encode an encrypted vector."""
    return pb.EncryptedVector(
        context_fingerprint=vector.fingerprint, length=vector.length, chunks=list(vector.chunks)
    )


def vector_from_proto(message: pb.EncryptedVector) -> EncryptedVector:
    """Decode an encrypted vector (structure only: chunks are parsed when they are used)."""
    if len(message.context_fingerprint) != 32:
        raise CryptoError(
            "EncryptedVector.context_fingerprint: expected 32 bytes, "
            f"found {len(message.context_fingerprint)}"
        )
    return EncryptedVector(bytes(message.context_fingerprint), int(message.length), tuple(message.chunks))


def params_to_proto(params: CkksParams) -> pb.CkksParameters:
    """Encode CKKS parameters."""
    return pb.CkksParameters(
        poly_modulus_degree=params.poly_modulus_degree,
        coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes),
        scale_bits=params.scale_bits,
    )


def params_from_proto(message: pb.CkksParameters) -> CkksParams:
    """Decode and validate CKKS parameters (``ParameterError`` when below the security bound)."""
    return CkksParams(
        poly_modulus_degree=message.poly_modulus_degree,
        coeff_mod_bit_sizes=tuple(message.coeff_mod_bit_sizes),
        scale_bits=message.scale_bits,
    )


def public_context_to_proto(signed: SignedPublicContext) -> pb.PublicContext:
    """Encode a signed public context."""
    return pb.PublicContext(
        context=signed.data,
        fingerprint=signed.fingerprint,
        parameters=params_to_proto(signed.params),
        signer=signed.signer,
        signature=signed.signature,
    )


def public_context_from_proto(message: pb.PublicContext) -> SignedPublicContext:
    """Decode a signed public context; call ``.verify(pinned_key)`` on the result before using it."""
    if not message.HasField("parameters"):
        raise CryptoError("PublicContext.parameters: missing")
    return SignedPublicContext(
        data=bytes(message.context),
        fingerprint=bytes(message.fingerprint),
        params=params_from_proto(message.parameters),
        signer=message.signer,
        signature=bytes(message.signature),
    )


def sign_contribution(key: SigningKey, step_id: str, vector: EncryptedVector) -> pb.Contribution:
    """Sign (step id, digest of the client's own ciphertext) as ``key``'s identity: what a client returns."""
    digest = vector.digest()
    return pb.Contribution(
        identity=key.identity,
        ciphertext_digest=digest,
        signature=key.sign(contribution_message(step_id, digest)),
    )


def weight_summary(weights: np.ndarray) -> pb.WeightSummary:
    """Summarise router weights of shape (K, N) over the contributors, as the key holder's policy reads it."""
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 2 or weights.size == 0:
        raise CryptoError(f"weights must have shape (K, N) with K, N ≥ 1, found {weights.shape}")
    sums = weights.sum(axis=0)
    return pb.WeightSummary(
        max_weight=float(weights.max()), min_row_sum=float(sums.min()), max_row_sum=float(sums.max())
    )


def decrypt_request(
    step_id: str, fused: EncryptedVector, contributions: Sequence[pb.Contribution], weights: np.ndarray
) -> pb.DecryptAggregateRequest:
    """Build the server's ``DecryptAggregate`` request for a fused vector and its contributors."""
    return pb.DecryptAggregateRequest(
        step_id=step_id,
        aggregate=vector_to_proto(fused),
        contributors=list(contributions),
        weights=weight_summary(weights),
        count=fused.length,
    )
