"""The key holder's decryption policy: the checks a ``DecryptAggregate`` request must pass.

``check_request`` is pure (no I/O, no decryption) and raises ``PolicyRefusal(code, rule, message)`` for
the first rule a request breaks; ``code`` is the gRPC status the service answers with.

| rule | status | refused when |
| --- | --- | --- |
| malformed | INVALID_ARGUMENT | bad step id, missing fields, count ≠ length, wrong chunk count, duplicates |
| oversize | RESOURCE_EXHAUSTED | more than ``max_values`` values (gRPC itself refuses oversize messages) |
| replay | ALREADY_EXISTS | the step id was decrypted before (the decryption log persists it) |
| context | FAILED_PRECONDITION | the ciphertext's fingerprint is not this key holder's public context |
| k_min | FAILED_PRECONDITION | fewer than ``k_min`` distinct contributors |
| contributor | PERMISSION_DENIED | a contributor has no pinned signing key, or is the server itself |
| signature | PERMISSION_DENIED | a contributor's signature over (step id, ciphertext digest) fails |
| weights | FAILED_PRECONDITION | row sums are not 1, or the largest weight is not in (0, 1] |
| w_max | FAILED_PRECONDITION | the largest router weight exceeds ``w_max`` |
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Container, Mapping
from dataclasses import dataclass

from secure_mor import protocol as pb
from secure_mor.crypto.ckks import EncryptedVector
from secure_mor.crypto.errors import CryptoError, PolicyRefusal
from secure_mor.crypto.keyholder_config import PolicyConfig
from secure_mor.crypto.signing import VerifyKey, contribution_message
from secure_mor.crypto.step_id import STEP_ID
from secure_mor.crypto.wire import vector_from_proto
from secure_mor.protocol.parsing import excerpt

ROW_SUM_TOLERANCE = 1e-6
WEIGHT_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Approved:
    """A request that passed every rule: what to decrypt and what to record."""

    step_id: str
    vector: EncryptedVector
    contributors: tuple[tuple[str, str], ...]  # (identity, hex ciphertext digest), sorted by identity
    max_weight: float
    count: int


def _malformed(message: str) -> PolicyRefusal:
    return PolicyRefusal("INVALID_ARGUMENT", "malformed", message)


def check_request(
    request: pb.DecryptAggregateRequest,
    *,
    policy: PolicyConfig,
    fingerprint: bytes,
    slots: int,
    pinned: Mapping[str, VerifyKey],
    decrypted: Container[str],
) -> Approved:
    """Apply the policy to ``request``; return what to decrypt or raise the first ``PolicyRefusal``."""
    step = request.step_id
    if not STEP_ID.match(step):
        raise _malformed(f"step_id must be 1–128 characters of A-Z a-z 0-9 . _ : / -, found {step[:40]!r}")
    if not request.HasField("aggregate") or not request.HasField("weights"):
        raise _malformed("aggregate and weights are required")
    count = int(request.count)
    if count > policy.max_values:
        raise PolicyRefusal(
            "RESOURCE_EXHAUSTED", "oversize", f"count {count} exceeds max_values {policy.max_values}"
        )
    try:
        vector = vector_from_proto(request.aggregate)
    except CryptoError as error:
        raise _malformed(str(error)) from None
    expected_chunks = -(-count // slots)
    if count < 1 or vector.length != count or len(vector.chunks) != expected_chunks:
        raise _malformed(
            f"count {count} must be ≥ 1 and equal aggregate.length ({vector.length}) with "
            f"{expected_chunks} chunk(s) of ≤ {slots} values, found {len(vector.chunks)}"
        )
    if step in decrypted:
        raise PolicyRefusal(
            "ALREADY_EXISTS", "replay", f"step {step!r} was already decrypted; use a new step id"
        )
    if vector.fingerprint != fingerprint:
        raise PolicyRefusal(
            "FAILED_PRECONDITION",
            "context",
            f"ciphertext was encrypted under another context ({vector.fingerprint.hex()[:16]}…) than this "
            f"key holder's ({fingerprint.hex()[:16]}…); fetch the current public context and re-encrypt",
        )
    contributors = _check_contributors(request, policy, pinned)
    _check_weights(request.weights, policy)
    return Approved(step, vector, contributors, request.weights.max_weight, count)


def _check_contributors(
    request: pb.DecryptAggregateRequest, policy: PolicyConfig, pinned: Mapping[str, VerifyKey]
) -> tuple[tuple[str, str], ...]:
    identities = [c.identity for c in request.contributors]
    if len(set(identities)) != len(identities):
        repeated = sorted(who for who, n in Counter(identities).items() if n > 1)
        raise _malformed(
            f"contributors must be distinct, found {len(identities) - len(set(identities))} repeat(s) of "
            + ", ".join(excerpt(who) for who in repeated[:4])
        )
    if len(identities) < policy.k_min:
        raise PolicyRefusal(
            "FAILED_PRECONDITION",
            "k_min",
            f"{len(identities)} contributor(s), the policy needs at least k_min = {policy.k_min}",
        )
    out = []
    for contribution in request.contributors:
        who = contribution.identity
        key = pinned.get(who)
        if key is None or who == policy.server_identity:
            raise PolicyRefusal(
                "PERMISSION_DENIED",
                "contributor",
                f"contributor {excerpt(who)} has no pinned signing key here",
            )
        digest = bytes(contribution.ciphertext_digest)
        if len(digest) != 32 or not key.verify(
            bytes(contribution.signature), contribution_message(request.step_id, digest)
        ):
            raise PolicyRefusal(
                "PERMISSION_DENIED",
                "signature",
                f"contributor {excerpt(who)}: no valid signature over (step id {request.step_id!r}, "
                "ciphertext digest)",
            )
        out.append((who, digest.hex()))
    return tuple(sorted(out))


def _check_weights(weights: pb.WeightSummary, policy: PolicyConfig) -> None:
    values = (weights.max_weight, weights.min_row_sum, weights.max_row_sum)
    if not all(math.isfinite(v) for v in values) or not 0.0 < weights.max_weight <= 1.0:
        raise PolicyRefusal(
            "FAILED_PRECONDITION", "weights", f"max_weight must be in (0, 1], found {values[0]}"
        )
    if abs(weights.min_row_sum - 1) > ROW_SUM_TOLERANCE or abs(weights.max_row_sum - 1) > ROW_SUM_TOLERANCE:
        raise PolicyRefusal(
            "FAILED_PRECONDITION",
            "weights",
            f"router rows must sum to 1 over the contributors, found sums in [{values[1]}, {values[2]}]",
        )
    if weights.max_weight > policy.w_max + WEIGHT_TOLERANCE:
        raise PolicyRefusal(
            "FAILED_PRECONDITION",
            "w_max",
            f"a router weight of {weights.max_weight:.6g} exceeds w_max = {policy.w_max}",
        )
