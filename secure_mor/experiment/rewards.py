"""The clients' rewards computed in one process, for the experiment grid: ``LocalScorer``.

It plugs into the server's ``MixtureOfRewards`` in place of the federation's ``FederatedScorer``: the
same routing, the same router weights, the same renormalisation and cap, the same weighted sum — but
each client's reward model is called directly and the sum is taken in plaintext (every client answers).
CKKS changes a fused reward by < 1e-5 (``tests/server/test_fusion.py``), so utility figures are the
same; what this skips is the cost and the protection, which ``secure-mor simulate`` and ``make bench``
measure. No cap beyond the routing's own (the learned router caps at ``router.w_max``): the
``single:<client>`` baseline (weight 1 on one client) exists only here — the key holder's policy
refuses to decrypt one client's score, which is what it is for.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from secure_mor.client.config import AgentConfig
from secure_mor.client.reward_model import RewardModel
from secure_mor.protocol import scoring as sp
from secure_mor.server.mixture import Rollouts
from secure_mor.server.routing import renormalise


class LocalScorer:
    """A ``Scorer`` over the clients' reward models in this process (plaintext fusion)."""

    def __init__(self, models: Mapping[str, RewardModel]) -> None:
        self.clients = tuple(f"client:{name}" for name in models)
        self.models = dict(models)

    def fuse(self, rollouts: Rollouts, weights: np.ndarray) -> list[float]:
        """Σ_k W[:, k] · r_k, W renormalised as the federation does when every client answers."""
        scores = np.stack(
            [m.score(rollouts.images, rollouts.questions, rollouts.answers) for m in self.models.values()],
            axis=1,
        )  # (N, K)
        kept = renormalise(weights, [True] * len(self.clients), w_max=1.0)
        return [float(v) for v in (kept * scores).sum(axis=1)]

    def calibrate(self, request: sp.CalibrationRequest) -> dict[str, sp.CalibrationReply]:
        """Answer a calibration request with each reward model directly (the clients' own code path)."""
        from secure_mor.client.tasks import answer_calibration

        return {
            f"client:{name}": answer_calibration(
                request,
                model=model,
                max_items=len(request.items),
                max_image_bytes=AgentConfig().max_image_bytes,
            )
            for name, model in self.models.items()
        }
