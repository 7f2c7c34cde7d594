"""Calibration end to end on the public calibration split: balanced pairs, competence, a router that routes.

The clients are synthetic specialists (each knows one question kind) and the features are synthetic
blobs per kind, so what is tested is the server's calibration logic, not a model: with specialist
clients the weights must follow the input; with input-independent competence they must not.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pytest

from secure_mor.data import FederatedSplits
from secure_mor.protocol import scoring as sp
from secure_mor.server.calibration import build_routing, calibration_pairs, shrunk_competence
from secure_mor.server.errors import RoutingError
from secure_mor.server.routing import LearnedRouting
from secure_mor.server.settings import RouterConfig, RoutingSpec

KINDS = ("color", "shape", "yesno")
CLIENTS = tuple(f"client:{kind}" for kind in KINDS)


def kind_of(calibration: datasets.Dataset) -> dict[str, str]:
    """Question text → kind (easy-VQA's wordings differ between kinds)."""
    return dict(zip(calibration["question"], calibration["kind"], strict=True))


def blob_features(
    kinds: Mapping[str, str], seed: int = 0
) -> Callable[[Sequence[Any], Sequence[str]], np.ndarray]:
    """φ: a noisy blob per question kind in 16 dimensions, the blobs 3 σ apart."""
    rng = np.random.default_rng(seed)
    centres = {kind: 3.0 * rng.standard_normal(16) for kind in KINDS}

    def features(images: Sequence[Any], questions: Sequence[str]) -> np.ndarray:
        return np.stack([centres[kinds[q]] + rng.standard_normal(16) for q in questions]).astype(np.float32)

    return features


def clients_answering(
    kinds: Mapping[str, str], accuracy: Callable[[str, str], float], *, sampled: bool = True
) -> Callable[[sp.CalibrationRequest], dict[str, sp.CalibrationReply]]:
    """A fan-out whose client ``c`` wins a pair of kind ``k`` with probability ``accuracy(c, k)``
    (``sampled``) or exactly that share of them."""
    rng = np.random.default_rng(1)

    def calibrate(request: sp.CalibrationRequest) -> dict[str, sp.CalibrationReply]:
        replies = {}
        for client in CLIENTS:
            wins: dict[int, list[float]] = {}
            for item in request.items:
                p = accuracy(client.removeprefix("client:"), kinds[item.question])
                wins.setdefault(item.cluster, []).append(float(rng.random() < p) if sampled else p)
            clusters = [
                sp.ClusterAccuracy(cluster=c, accuracy=float(np.mean(w)), count=len(w))
                for c, w in wins.items()
            ]
            replies[client] = sp.CalibrationReply(request_id=request.request_id, clusters=clusters)
        return replies

    return calibrate


def mean_weight_per_kind(router: LearnedRouting, features: Any, pairs: datasets.Dataset) -> np.ndarray:
    """(kinds, clients) mean router weight on the prompts of each kind."""
    weights = router.weights(features(pairs["image"], pairs["question"]), CLIENTS)
    kinds = np.array(pairs["kind"])
    return np.stack([weights[kinds == kind].mean(axis=0) for kind in KINDS])


@pytest.fixture(scope="module")
def calibration(easy_splits: FederatedSplits) -> datasets.Dataset:
    return easy_splits.calibration


def test_calibration_pairs_are_balanced_over_kinds(calibration: datasets.Dataset) -> None:
    assert Counter(calibration["kind"])["yesno"] > 2 * Counter(calibration["kind"])["color"]
    pairs = calibration_pairs(calibration, 90, seed=0)
    assert Counter(pairs["kind"]) == {"color": 30, "shape": 30, "yesno": 30}
    assert all(c != r for c, r in zip(pairs["chosen"], pairs["rejected"], strict=True))


def test_competence_is_shrunk_towards_chance_by_its_pair_count() -> None:
    replies = np.array([[1.0, 1.0, np.nan]])
    shrunk = shrunk_competence(replies, np.array([2, 200, 50]), prior_pairs=8)
    np.testing.assert_allclose(shrunk, [[(2 + 4) / 10, (200 + 4) / 208, 0.5]])


def test_router_sends_each_kind_to_its_specialist(calibration: datasets.Dataset, tmp_path: Path) -> None:
    kinds = kind_of(calibration)
    features = blob_features(kinds)
    calibrate = clients_answering(kinds, lambda client, kind: 0.9 if client == kind else 0.5)
    config = RouterConfig(calibration_items=240, epochs=200)
    router = build_routing(
        RoutingSpec.parse("router", KINDS),
        config,
        CLIENTS,
        calibration,
        features,
        calibrate,
        request_id="cal/0",
        folder=tmp_path / "router",
    )
    assert isinstance(router, LearnedRouting)
    held_out = calibration_pairs(calibration.shuffle(seed=5), 150, seed=5)
    matrix = mean_weight_per_kind(router, features, held_out)
    own = np.diag(matrix)
    off = matrix[~np.eye(3, dtype=bool)]
    assert own.min() >= 0.6, f"each specialist should weigh ≥ 0.6 on its kind:\n{matrix.round(3)}"
    assert off.max() < 0.25, f"no client should weigh ≥ 0.25 off its kind:\n{matrix.round(3)}"
    saved = json.loads((tmp_path / "router" / "competence.json").read_text())
    assert saved["clients"] == list(CLIENTS)
    assert sum(saved["pairs_per_cluster"]) == 240
    assert {k: sum(v) for k, v in saved["kinds_per_cluster"].items()} == dict.fromkeys(KINDS, 80)


def test_input_independent_competence_gives_input_independent_weights(
    calibration: datasets.Dataset, tmp_path: Path
) -> None:
    kinds = kind_of(calibration)
    features = blob_features(kinds)
    calibrate = clients_answering(kinds, lambda client, kind: 0.8, sampled=False)
    config = RouterConfig(calibration_items=240, epochs=200)
    router = build_routing(
        RoutingSpec.parse("router", KINDS),
        config,
        CLIENTS,
        calibration,
        features,
        calibrate,
        request_id="cal/0",
        folder=tmp_path / "router",
    )
    assert isinstance(router, LearnedRouting)
    matrix = mean_weight_per_kind(router, features, calibration_pairs(calibration, 150, seed=5))
    np.testing.assert_allclose(matrix, 1 / 3, atol=0.02)


def test_a_router_of_another_format_is_refused_on_resume(
    calibration: datasets.Dataset, tmp_path: Path
) -> None:
    kinds = kind_of(calibration)
    features = blob_features(kinds)
    calibrate = clients_answering(kinds, lambda client, kind: 0.9 if client == kind else 0.5)
    config = RouterConfig(calibration_items=60, epochs=20)
    build_routing(
        RoutingSpec.parse("router", KINDS),
        config,
        CLIENTS,
        calibration,
        features,
        calibrate,
        request_id="cal/0",
        folder=tmp_path / "router",
    )
    state = json.loads((tmp_path / "router" / "router.json").read_text())
    del state["format"]
    (tmp_path / "router" / "router.json").write_text(json.dumps(state))
    with pytest.raises(RoutingError, match="router format 1"):
        LearnedRouting.load(tmp_path / "router")
