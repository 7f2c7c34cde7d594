"""CKKS fusion benchmark: what encrypted rewards cost per GRPO step, beside the plaintext computation.

Run: ``.venv/bin/python benchmarks/ckks_fusion.py [--repeats 15]`` (``make bench`` runs it too).

For K clients and N scores (rollouts) per step, with the default parameters (N_ring = 8192,
[60, 40, 40, 60], scale 2^40), it measures the median of ``--repeats`` runs of:

* encrypt — one client encrypts its N scores (``PublicContext.encrypt``, serialised chunks);
* fuse — the server computes Σ_k W[:, k] ⊙ Enc(r_k) from the K serialised ciphertexts and serialises
  the result (``PublicContext.weighted_sum``: deserialise, plaintext×ciphertext, add, serialise);
* decrypt — the key holder decrypts the fused vector (``SecretContext.decrypt``);
* plaintext — the same weighted sum in NumPy;

plus bytes per score of one client's ciphertext, ciphertexts per client, the largest error against
the plaintext result, and the public context's size. Targets (issue 3): K = 8, N = 1,024 fused in
≤ 25 ms; one ciphertext per client per step up to 4,096 scores; public context ≤ 1 MB.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from secure_mor.crypto.ckks import CkksParams, SecretContext

CLIENTS = (2, 8, 32)
SCORES = (1024, 4096)


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description="CKKS fusion benchmark (see the module docstring).")
    parser.add_argument("--repeats", type=int, default=15, help="Runs per measurement (the median is shown).")
    parser.add_argument("--clients", type=int, nargs="+", default=list(CLIENTS), help="Values of K.")
    parser.add_argument("--scores", type=int, nargs="+", default=list(SCORES), help="Values of N.")
    parser.add_argument(
        "--json", type=Path, help="Also write the figures as JSON here (benchmarks/run_all.py)."
    )
    args = parser.parse_args()
    rows: list[dict[str, float]] = []
    secret = SecretContext.generate(CkksParams())
    public = secret.public
    rng = np.random.default_rng(0)
    print(f"public context: {len(public.data):,} bytes (no secret, Galois or relinearisation keys)\n")
    print(
        "| K | N | encrypt / client (ms) | fuse (ms) | decrypt (ms) | plaintext (ms) | bytes / score "
        "| ciphertexts / client | max error |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in args.scores:
        for k in args.clients:
            scores = rng.random((k, n))  # (K, N) rewards in [0, 1]
            weights = rng.dirichlet(np.ones(k), n).T  # (K, N), columns sum to 1
            vectors = [public.encrypt(row) for row in scores]
            fused = public.weighted_sum(vectors, weights)
            error = float(np.abs(secret.decrypt(fused) - (weights * scores).sum(axis=0)).max())
            encrypt = median_ms(lambda: public.encrypt(scores[0]), args.repeats)  # noqa: B023
            fuse = median_ms(lambda: public.weighted_sum(vectors, weights), args.repeats)  # noqa: B023
            decrypt = median_ms(lambda: secret.decrypt(fused), args.repeats)  # noqa: B023
            plain = median_ms(lambda: (weights * scores).sum(axis=0), args.repeats)  # noqa: B023
            per_score = vectors[0].nbytes / n
            print(
                f"| {k} | {n:,} | {encrypt:.1f} | {fuse:.1f} | {decrypt:.1f} | {plain:.3f} "
                f"| {per_score:,.0f} | {len(vectors[0].chunks)} | {error:.1e} |"
            )
            rows.append(
                {"K": k, "N": n, "encrypt_ms": encrypt, "fuse_ms": fuse, "decrypt_ms": decrypt}
                | {"plaintext_ms": plain, "bytes_per_score": per_score, "max_error": error}
            )
    if args.json:
        args.json.write_text(json.dumps({"repeats": args.repeats, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
