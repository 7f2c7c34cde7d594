"""Router weights: rows sum to 1, nothing above w_max, competence decides who weighs most."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from secure_mor.server.errors import RoutingError
from secure_mor.server.routing import (
    LearnedRouting,
    SingleRouting,
    UniformRouting,
    cap_weights,
    renormalise,
)
from secure_mor.server.settings import RouterConfig

CLIENTS = ("color", "shape", "yesno")


@settings(max_examples=200, deadline=None)
@given(
    arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(2, 8)), elements=st.floats(0, 10)),
    st.floats(0.5, 1.0),
)
def test_capped_rows_are_distributions_below_w_max(weights: np.ndarray, w_max: float) -> None:
    capped = cap_weights(weights, w_max)
    assert capped.shape == weights.shape
    np.testing.assert_allclose(capped.sum(axis=1), 1.0, atol=1e-9)
    assert capped.min() >= 0
    assert capped.max() <= w_max + 1e-12


def test_cap_moves_excess_pro_rata_and_keeps_feasible_rows() -> None:
    capped = cap_weights(np.array([[0.9, 0.075, 0.025], [0.2, 0.3, 0.5]]), 0.6)
    np.testing.assert_allclose(capped[0], [0.6, 0.3, 0.1])
    np.testing.assert_allclose(capped[1], [0.2, 0.3, 0.5])


def test_unsatisfiable_cap_is_refused() -> None:
    with pytest.raises(
        RoutingError, match=r"2 client\(s\) cannot share a weight of 1 with none above w_max=0.4"
    ):
        cap_weights(np.ones((1, 2)), 0.4)


def test_renormalise_over_answering_clients() -> None:
    w = np.array([[0.5, 0.25, 0.25]])
    np.testing.assert_allclose(renormalise(w, [True, False, True], 1.0), [[2 / 3, 1 / 3]])
    with pytest.raises(RoutingError, match="no client answered"):
        renormalise(w, [False, False, False], 1.0)


def test_baselines() -> None:
    features = np.zeros((4, 8))
    np.testing.assert_allclose(UniformRouting().weights(features, CLIENTS), 1 / 3)
    single = SingleRouting("shape").weights(features, CLIENTS)
    assert (single[:, 1] == 1).all()
    assert single.sum() == 4
    with pytest.raises(RoutingError, match="single:bank: no such client"):
        SingleRouting("bank").weights(features, CLIENTS)


def clustered_features(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated blobs in 16 dimensions, 40 points each, with their true blob ids."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 5, (3, 16))
    blob = np.repeat(np.arange(3), 40)
    return (centers[blob] + rng.normal(0, 0.3, (120, 16))).astype(np.float32), blob


def test_learned_router_gives_each_cluster_to_its_competent_client(tmp_path: Path) -> None:
    features, blob = clustered_features()
    config = RouterConfig(clusters=3, w_max=0.8, uniform_floor=0.1)
    router, clusters = LearnedRouting.from_calibration_features(config, CLIENTS, features)
    # Client k is competent (accuracy 0.95) exactly on the cluster holding blob k, at chance elsewhere.
    competence = np.full((3, 3), 0.5)
    for k in range(3):
        competence[k, clusters[blob == k][0]] = 0.95
    router.fit(features, clusters, competence)
    weights = router.weights(features, CLIENTS)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-9)
    assert weights.max() <= 0.8 + 1e-12
    assert (weights.argmax(axis=1) == blob).mean() > 0.95
    assert weights.min() >= 0.1 / 3 - 1e-9  # the uniform floor
    router.save(tmp_path / "router")
    again = LearnedRouting.load(tmp_path / "router")
    np.testing.assert_allclose(again.weights(features, CLIENTS), weights)


def test_router_rejects_bad_competence_and_other_clients() -> None:
    features, _ = clustered_features()
    router, clusters = LearnedRouting.from_calibration_features(RouterConfig(clusters=3), CLIENTS, features)
    with pytest.raises(RoutingError, match="competence must be"):
        router.fit(features, clusters, np.ones((2, 3)))
    with pytest.raises(RoutingError, match="accuracies in"):
        router.fit(features, clusters, np.full((3, 3), 1.5))
    with pytest.raises(RoutingError, match="fitted for clients"):
        router.weights(features, ("a", "b", "c"))
