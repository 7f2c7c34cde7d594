"""Conversions between the crypto types and the wire messages of ``secure_mor.protocol``.

Inputs are checked here, at the wire boundary: a message that does not fit raises a ``CryptoError``
that names the field, the expected and the found value.
"""

from __future__ import annotations

from secure_mor import protocol as pb
from secure_mor.crypto.ckks import CkksParams, EncryptedVector, SignedPublicContext
from secure_mor.crypto.errors import CryptoError


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
