"""CKKS primitives (TenSEAL): parameters, the key holder's secret context, the public context, fusion.

Roles are types. ``SecretContext`` holds the CKKS secret key: it decrypts, it can be saved to a 0600
file on the key holder's disk, and it cannot be pickled or serialised for sending. ``PublicContext``
holds only the public encryption key — no secret key, no Galois or relinearisation keys — so it can
encrypt and compute plaintext-times-ciphertext sums, and can never decrypt. Its ``fingerprint`` (the
SHA-256 of its serialisation) travels with every ``EncryptedVector``; a ciphertext under another
fingerprint is refused, because decrypting it under the wrong key would silently return garbage. The
key holder signs the public context (``SignedPublicContext``); whoever loads it verifies the signature
against the key holder's pinned Ed25519 key first.

A vector of any length L is encrypted in ``ceil(L / slots)`` chunks of at most ``slots = N / 2`` values,
so one ciphertext carries up to 4,096 scores at N = 8192.
"""

from __future__ import annotations

import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import tenseal as ts

from secure_mor.crypto.ckks_params import MAX_BITS_128, CkksParams, context_parameters
from secure_mor.crypto.errors import ContextMismatchError, CryptoError, ParameterError
from secure_mor.crypto.signing import (
    PUBLIC_CONTEXT_DOMAIN,
    SigningKey,
    VerifyKey,
    canonical_json,
    sha256,
    write_private,
)

CIPHERTEXT_DOMAIN = b"secure-mor/ciphertext/v1\n"


@dataclass(frozen=True)
class EncryptedVector:
    """L values encrypted in chunks under the public context whose fingerprint it carries."""

    fingerprint: bytes
    length: int
    chunks: tuple[bytes, ...]

    def digest(self) -> bytes:
        """SHA-256 over domain tag, fingerprint, length and the length-prefixed chunks (what clients sign)."""
        parts = [CIPHERTEXT_DOMAIN, self.fingerprint, self.length.to_bytes(8, "big")]
        for chunk in self.chunks:
            parts += [len(chunk).to_bytes(8, "big"), chunk]
        return sha256(b"".join(parts))

    @property
    def nbytes(self) -> int:
        """Total size of the serialised chunks."""
        return sum(len(c) for c in self.chunks)


def _check_chunks(vector: EncryptedVector, fingerprint: bytes, slots: int) -> None:
    if vector.fingerprint != fingerprint:
        raise ContextMismatchError(
            f"ciphertext context fingerprint {vector.fingerprint.hex()[:16]}… differs from this context's "
            f"{fingerprint.hex()[:16]}…: it was encrypted under another key and is refused"
        )
    expected = -(-vector.length // slots)
    if vector.length < 1 or len(vector.chunks) != expected:
        raise CryptoError(
            f"encrypted vector of length {vector.length} must have {expected} chunk(s) of ≤ {slots} "
            f"values, found {len(vector.chunks)}"
        )


class PublicContext:
    """The encryption-only context: public key, no secret, Galois or relinearisation keys."""

    __slots__ = ("_ctx", "data", "fingerprint", "params")

    def __init__(self, data: bytes, params: CkksParams) -> None:
        try:
            ctx = ts.context_from(data)
        except Exception as error:  # TenSEAL raises ValueError/RuntimeError with a parser message
            raise CryptoError(f"public context does not parse: {error}") from None
        if ctx.has_secret_key() or ctx.has_galois_keys() or ctx.has_relin_keys():
            raise CryptoError("a public context must hold no secret, Galois or relinearisation keys")
        found = context_parameters(ctx)
        if found != (params.poly_modulus_degree, params.coeff_mod_bit_sizes):
            raise ParameterError(
                f"context has N = {found[0]} with moduli {list(found[1])} bits; its parameters say "
                f"N = {params.poly_modulus_degree} with {list(params.coeff_mod_bit_sizes)}"
            )
        ctx.global_scale = 2.0**params.scale_bits
        self._ctx, self.data, self.params, self.fingerprint = ctx, data, params, sha256(data)

    def encrypt(self, values: Sequence[float] | np.ndarray) -> EncryptedVector:
        """Encrypt a 1-D vector of any length ≥ 1 in chunks of at most ``params.slots`` values."""
        array = np.asarray(values, dtype=np.float64)
        if array.ndim != 1 or array.size == 0 or not np.all(np.isfinite(array)):
            raise CryptoError(f"expected a non-empty 1-D vector of finite numbers, found shape {array.shape}")
        slots = self.params.slots
        chunks = tuple(
            ts.ckks_vector(self._ctx, array[i : i + slots].tolist()).serialize()
            for i in range(0, array.size, slots)
        )
        return EncryptedVector(self.fingerprint, int(array.size), chunks)

    def weighted_sum(self, vectors: Sequence[EncryptedVector], weights: np.ndarray) -> EncryptedVector:
        """Σ_k weights[k] ⊙ vectors[k] with per-slot plaintext weights of shape (K, L).

        Only plaintext-times-ciphertext products and ciphertext additions: no evaluation keys needed.
        """
        weights = np.asarray(weights, dtype=np.float64)
        if (
            not vectors
            or weights.shape != (len(vectors), vectors[0].length)
            or not np.all(np.isfinite(weights))
        ):
            raise CryptoError(
                f"weights must be finite with shape (K, L) = ({len(vectors)}, "
                f"{vectors[0].length if vectors else '?'}), found {weights.shape}"
            )
        for vector in vectors:
            _check_chunks(vector, self.fingerprint, self.params.slots)
            if vector.length != vectors[0].length:
                raise CryptoError(f"vectors differ in length: {vector.length} vs {vectors[0].length}")
        slots, fused = self.params.slots, []
        for c in range(len(vectors[0].chunks)):
            lo, hi = c * slots, min((c + 1) * slots, vectors[0].length)
            acc = None
            for vector, w in zip(vectors, weights, strict=True):
                term = self._load(vector.chunks[c]).mul(w[lo:hi].tolist())
                acc = term if acc is None else acc.add_(term)
            assert acc is not None
            fused.append(acc.serialize())
        return EncryptedVector(self.fingerprint, vectors[0].length, tuple(fused))

    def _load(self, chunk: bytes) -> Any:
        try:
            return ts.ckks_vector_from(self._ctx, chunk)
        except Exception as error:  # TenSEAL: ValueError "failed to parse", RuntimeError "data is invalid"
            raise CryptoError(f"malformed ciphertext chunk: {error}") from None


@dataclass(frozen=True)
class SignedPublicContext:
    """A serialised public context with its fingerprint, parameters and the key holder's signature."""

    data: bytes
    fingerprint: bytes
    params: CkksParams
    signer: str
    signature: bytes

    @staticmethod
    def message(fingerprint: bytes, params: CkksParams) -> bytes:
        """Return the signed bytes: domain tag, fingerprint, canonical JSON of the parameters."""
        return PUBLIC_CONTEXT_DOMAIN + fingerprint + canonical_json(params.to_json())

    def verify(self, key: VerifyKey) -> PublicContext:
        """Check fingerprint and signature against the pinned key, then load; refuse anything else."""
        if self.signer != key.identity:
            raise CryptoError(f"public context is signed by {self.signer!r}; expected {key.identity!r}")
        if sha256(self.data) != self.fingerprint:
            raise CryptoError("public context: fingerprint does not match its bytes")
        key.require(self.signature, self.message(self.fingerprint, self.params), "public context")
        return PublicContext(self.data, self.params)


class SecretContext:
    """The key holder's context with the CKKS secret key. Decrypts; is never pickled or sent."""

    __slots__ = ("_ctx", "_public", "params")

    def __init__(self, ctx: Any, params: CkksParams) -> None:
        if not ctx.has_secret_key():
            raise CryptoError("a SecretContext needs a context with a secret key")
        ctx.global_scale = 2.0**params.scale_bits
        self._ctx, self.params = ctx, params
        public = ctx.serialize(
            save_public_key=True, save_secret_key=False, save_galois_keys=False, save_relin_keys=False
        )
        self._public = PublicContext(public, params)

    @classmethod
    def generate(cls, params: CkksParams) -> SecretContext:
        """Fresh keys for ``params`` (the relinearisation keys TenSEAL makes are never saved or sent)."""
        ctx = ts.context(
            ts.SCHEME_TYPE.CKKS,
            poly_modulus_degree=params.poly_modulus_degree,
            coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes),
        )
        return cls(ctx, params)

    @classmethod
    def load(cls, path: Path, params: CkksParams) -> SecretContext:
        """Read a secret context saved by ``save``; refuse a file readable by group or others."""
        if not path.is_file():
            raise CryptoError(f"CKKS secret context not found: {path}")
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise CryptoError(f"{path}: secret key file is readable by others; run chmod 600 {path}")
        try:
            ctx = ts.context_from(path.read_bytes())
        except Exception as error:
            raise CryptoError(f"{path}: not a TenSEAL context ({error})") from None
        try:
            return cls(ctx, params)
        except ParameterError as error:
            raise ParameterError(f"{path}: keys were made for other CKKS parameters: {error}") from None

    def save(self, path: Path) -> None:
        """Write the secret context (public + secret key only) to a new 0600 file."""
        write_private(
            path,
            self._ctx.serialize(
                save_public_key=True, save_secret_key=True, save_galois_keys=False, save_relin_keys=False
            ),
        )

    @property
    def public(self) -> PublicContext:
        """The matching public context."""
        return self._public

    def sign_public(self, key: SigningKey) -> SignedPublicContext:
        """Sign the public context with the key holder's Ed25519 key."""
        fp = self._public.fingerprint
        return SignedPublicContext(
            self._public.data,
            fp,
            self.params,
            key.identity,
            key.sign(SignedPublicContext.message(fp, self.params)),
        )

    def decrypt(self, vector: EncryptedVector) -> np.ndarray:
        """Decrypt ``vector`` (shape (L,)); refuse another context's ciphertext or a malformed one."""
        _check_chunks(vector, self._public.fingerprint, self.params.slots)
        out = []
        for chunk in vector.chunks:
            try:
                out.extend(ts.ckks_vector_from(self._ctx, chunk).decrypt())
            except Exception as error:
                raise CryptoError(f"malformed ciphertext chunk: {error}") from None
        if len(out) != vector.length:
            raise CryptoError(f"decrypted {len(out)} values, the vector declares {vector.length}")
        return np.asarray(out, dtype=np.float64)

    def __repr__(self) -> str:
        return f"SecretContext({self.params.to_json()}, <secret key>)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a SecretContext holds the CKKS secret key and cannot be pickled or sent")


__all__ = [
    "MAX_BITS_128",
    "CkksParams",
    "EncryptedVector",
    "PublicContext",
    "SecretContext",
    "SignedPublicContext",
]
