"""The mixture reward computed in one process, for the experiment grid.

``LocalMixture`` uses the same routing and the same clients' reward models as the secure path, but
calls each reward model directly and fuses in plaintext (every client answers, so rows need no
renormalisation). CKKS changes a fused reward by < 1e-5 (tests/server/test_mixture.py), so utility
figures are the same; what this skips is the cost and the protection, which ``secure-mor simulate``
and ``make bench`` measure. It also records the mean router weight per client and question kind.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from secure_mor.client.config import AgentConfig
from secure_mor.client.reward_model import RewardModel
from secure_mor.protocol import scoring as sp
from secure_mor.server.calibration import Calibrate
from secure_mor.server.mixture import FeatureFn
from secure_mor.server.rewards import completion_text
from secure_mor.server.routing import Routing


class LocalMixture:
    """TRL reward function: Σ_k W[:, k] · score_k over the clients' reward models, in this process."""

    __name__ = "mor"

    def __init__(
        self,
        models: Mapping[str, RewardModel],
        routing: Routing,
        features: FeatureFn,
    ) -> None:
        self.identities = tuple(f"client:{name}" for name in models)
        self.models = tuple(models.values())
        self.routing, self.features = routing, features
        self._weight_sums: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(len(self.models)))
        self._counts: dict[str, int] = defaultdict(int)

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        """One fused reward per completion."""
        images, questions = list(columns["image"]), list(columns["question"])
        answers = [completion_text(c) for c in completions]
        weights = self.routing.weights(self.features(images, questions), self.identities)  # (N, K)
        scores = np.stack([m.score(images, questions, answers) for m in self.models], axis=1)  # (N, K)
        for kind, row in zip(columns.get("kind", ["all"] * len(answers)), weights, strict=True):
            self._weight_sums[kind] += row
            self._counts[kind] += 1
        return [float(v) for v in (weights * scores).sum(axis=1)]

    def mean_weights(self) -> dict[str, dict[str, float]]:
        """Mean router weight per question kind and client over every rollout scored so far."""
        names = [identity.removeprefix("client:") for identity in self.identities]
        return {
            kind: dict(zip(names, (total / self._counts[kind]).round(4).tolist(), strict=True))
            for kind, total in sorted(self._weight_sums.items())
        }


def local_calibration(models: Mapping[str, RewardModel], max_items: int) -> Calibrate:
    """Answer a calibration request with each reward model directly (the clients' own code path)."""
    from secure_mor.client.tasks import answer_calibration

    def calibrate(request: sp.CalibrationRequest) -> dict[str, sp.CalibrationReply]:
        return {
            f"client:{name}": answer_calibration(
                request, model=model, max_items=max_items, max_image_bytes=AgentConfig().max_image_bytes
            )
            for name, model in models.items()
        }

    return calibrate
