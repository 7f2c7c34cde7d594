"""Homomorphic fusion of the clients' encrypted scores, and the key holder's decryption of the result.

``SecureFusion.fuse`` computes c = Σ_k W[:, k] ⊙ Enc(r_k) over the clients that answered (plaintext
weights times ciphertexts, then additions: the public context needs no evaluation keys) and sends c
with the contributors' signatures and a weight summary to the key holder's ``DecryptAggregate``. The
server only ever handles ``EncryptedVector`` objects here — it never sees a client's plaintext score;
``fuse`` refuses anything else — and receives only the N fused rewards back. With a run's
``RunAnchors``, each request is recorded before it is sent and the key holder's receipt (the seq and
hash of its decryption-log entry) after it is answered: the audit's evidence that the key holder's log
is whole and holds no decryption the server never asked for.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
import numpy as np

from secure_mor import protocol as pb
from secure_mor.anchors import DecryptionReceipt, DecryptionRequested
from secure_mor.crypto.ckks import EncryptedVector, PublicContext
from secure_mor.crypto.signing import VerifyKey
from secure_mor.crypto.wire import decrypt_request, public_context_from_proto
from secure_mor.server.anchors import RunAnchors
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
    log_entry_hash: str  # hex SHA-256 of the key holder's decryption-log entry (the receipt)
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
    """Fuses under the key holder's public context; decrypts only through the key holder's policy.

    ``anchors`` (the run's anchors log) records each request before it is sent and each receipt after.
    """

    def __init__(
        self,
        public: PublicContext,
        keyholder: pb.KeyHolderStub,
        *,
        timeout: float = 30.0,
        anchors: RunAnchors | None = None,
    ) -> None:
        self.public, self.keyholder, self.timeout, self.anchors = public, keyholder, timeout, anchors

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
        contributors = tuple(a.identity for a in answers)
        if self.anchors is not None:  # on disk before the key holder can decrypt: a lost answer stays known
            self.anchors.record(DecryptionRequested(step_id, contributors))
        try:
            response = self.keyholder.DecryptAggregate(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise DecryptionRefusedError(step_id, error.code().name, error.details() or "") from None
        if self.anchors is not None:
            receipt = DecryptionReceipt(step_id, int(response.log_seq), response.log_entry_hash)
            self.anchors.record(receipt)
        return FusedRewards(
            step_id=step_id,
            values=np.asarray(response.values, dtype=np.float64),
            contributors=contributors,
            log_seq=int(response.log_seq),
            log_entry_hash=response.log_entry_hash,
            fuse_seconds=fused_at - started,
            decrypt_seconds=time.perf_counter() - fused_at,
        )
