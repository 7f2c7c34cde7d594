"""Homomorphic fusion of the clients' encrypted scores, and the key holder's decryption of the result.

``SecureFusion.fuse`` computes c = Σ_k W[:, k] ⊙ Enc(r_k) over the clients that answered (plaintext
weights times ciphertexts, then additions: the public context needs no evaluation keys) and sends c
with the contributors' signatures and a weight summary to the key holder's ``DecryptAggregate``. The
server only ever handles ``EncryptedVector`` objects here — it never sees a client's plaintext score;
``fuse`` refuses anything else — and receives only the N fused rewards back.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
import numpy as np

from secure_mor import protocol as pb
from secure_mor.crypto.ckks import EncryptedVector, PublicContext
from secure_mor.crypto.signing import VerifyKey
from secure_mor.crypto.wire import decrypt_request, public_context_from_proto
from secure_mor.server.errors import ServerError


class DecryptionRefusedError(ServerError):
    """The key holder refused to decrypt a fused vector (its policy said no, or it was unreachable)."""

    exit_code = 1

    def __init__(self, step_id: str, code: str, detail: str) -> None:
        super().__init__(f"key holder refused step {step_id}: {code}: {detail}")
        self.step_id, self.code = step_id, code


@dataclass(frozen=True)
class EncryptedScores:
    """One client's answer to a scoring task: its ciphertext and its signature over (step id, digest)."""

    identity: str
    vector: EncryptedVector
    contribution: pb.Contribution


@dataclass(frozen=True)
class FusedRewards:
    """The decrypted fused rewards of one step, the decryption-log entry that records them, and timings."""

    step_id: str
    values: np.ndarray  # (N,)
    contributors: tuple[str, ...]
    log_seq: int
    fuse_seconds: float
    decrypt_seconds: float


def fetch_public_context(
    keyholder: pb.KeyHolderStub, pinned: VerifyKey, timeout: float = 30.0
) -> PublicContext:
    """The key holder's public context, verified against its pinned signing key (raises if it does not)."""
    try:
        message = keyholder.GetPublicContext(pb.GetPublicContextRequest(), timeout=timeout)
    except grpc.RpcError as error:
        raise ServerError(f"cannot reach the key holder: {error.code().name}: {error.details()}") from None
    return public_context_from_proto(message).verify(pinned)


class SecureFusion:
    """Fuses under the key holder's public context; decrypts only through the key holder's policy."""

    def __init__(self, public: PublicContext, keyholder: pb.KeyHolderStub, *, timeout: float = 30.0) -> None:
        self.public, self.keyholder, self.timeout = public, keyholder, timeout

    def fuse(self, step_id: str, answers: Sequence[EncryptedScores], weights: np.ndarray) -> FusedRewards:
        """Fuse ``answers`` with ``weights`` (N, K), one column per answer, and have the fusion decrypted."""
        for answer in answers:
            if not isinstance(answer, EncryptedScores) or not isinstance(answer.vector, EncryptedVector):
                raise TypeError(f"fusion takes EncryptedScores with an EncryptedVector, got {type(answer)}")
        per_client = np.asarray(weights, dtype=np.float64).T  # (K, N)
        if per_client.shape[0] != len(answers):
            raise ServerError(f"{per_client.shape[0]} weight columns for {len(answers)} answering clients")
        started = time.perf_counter()
        fused = self.public.weighted_sum([a.vector for a in answers], per_client)
        fused_at = time.perf_counter()
        request = decrypt_request(step_id, fused, [a.contribution for a in answers], per_client)
        try:
            response = self.keyholder.DecryptAggregate(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise DecryptionRefusedError(step_id, error.code().name, error.details() or "") from None
        return FusedRewards(
            step_id=step_id,
            values=np.asarray(response.values, dtype=np.float64),
            contributors=tuple(a.identity for a in answers),
            log_seq=int(response.log_seq),
            fuse_seconds=fused_at - started,
            decrypt_seconds=time.perf_counter() - fused_at,
        )
