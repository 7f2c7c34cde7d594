"""Router weights: one weight per rollout and client, rows summing to 1, none above ``w_max``.

This router is secure-mor's own design (the MoR paper's abstract gives no router details):
k-means clusters over the standardised prompt features of the frozen reference; each client's pairwise
accuracy per cluster on a public calibration set (its "competence", K × C numbers, post-processing of
its DP model on public inputs, so it costs no privacy budget), shrunk towards chance by a prior of a few
pairs; a small gate MLP on the features trained to reproduce softmax(competence[:, cluster] / τ); at
use, a uniform floor λ and a cap at ``w_max``.
Baselines (uniform, one client) produce weights through the same ``Routing`` interface.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import KMeans

from secure_mor.server.errors import RoutingError
from secure_mor.server.settings import RouterConfig

ROUTER_FORMAT = 2
"""Version of ``router.json``: 2 = k-means on standardised last-token features. A router saved in
another format was fitted on other features, so a resumed run refuses it rather than misroute."""


def cap_weights(weights: np.ndarray, w_max: float) -> np.ndarray:
    """Project each row onto {w ≥ 0, Σw = 1, w ≤ w_max}, moving excess to uncapped entries pro rata.

    Raises ``RoutingError`` when the cap cannot be met (fewer than 1/w_max columns).
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] == 0:
        raise RoutingError(f"weights must be an (N, K) array with K ≥ 1, found shape {w.shape}")
    if w.shape[1] * w_max < 1 - 1e-12:
        raise RoutingError(f"{w.shape[1]} client(s) cannot share a weight of 1 with none above w_max={w_max}")
    w = np.clip(w, 0.0, None)
    sums = w.sum(axis=1, keepdims=True)
    w = np.where(sums > 0, w / np.where(sums > 0, sums, 1), 1.0 / w.shape[1])
    for _ in range(w.shape[1]):
        over = w > w_max + 1e-12
        if not over.any():
            break
        excess = np.where(over, w - w_max, 0.0).sum(axis=1, keepdims=True)
        w = np.where(over, w_max, w)
        free = ~over & (w < w_max - 1e-12)
        base = np.where(free, w, 0.0)
        base_sum = base.sum(axis=1, keepdims=True)
        even = free / np.maximum(free.sum(axis=1, keepdims=True), 1)
        share = np.where(base_sum > 0, base / np.where(base_sum > 0, base_sum, 1.0), even)
        w = w + excess * share
    return np.minimum(w, w_max)


def renormalise(weights: np.ndarray, answered: Sequence[bool], w_max: float) -> np.ndarray:
    """The columns of the clients that answered, rows renormalised to 1 and re-capped at ``w_max``."""
    keep = np.asarray(answered, dtype=bool)
    if keep.shape != (weights.shape[1],):
        raise RoutingError(f"answered mask has {keep.size} entries for {weights.shape[1]} clients")
    if not keep.any():
        raise RoutingError("no client answered: nothing to fuse")
    return cap_weights(weights[:, keep], w_max)


class Routing(ABC):
    """A way of weighting clients per rollout; every method returns (N, K) rows summing to 1."""

    @abstractmethod
    def weights(self, features: np.ndarray, clients: Sequence[str]) -> np.ndarray:
        """(N, K) weights for N rollouts with features ``features`` (N, H) and clients in this order."""


class UniformRouting(Routing):
    """Every client weighs 1/K: the baseline without a router."""

    def weights(self, features: np.ndarray, clients: Sequence[str]) -> np.ndarray:
        """1/K everywhere."""
        return np.full((len(features), len(clients)), 1.0 / len(clients))


class SingleRouting(Routing):
    """One client's reward alone (weight 1): the single-client baseline, needs ``w_max`` = 1."""

    def __init__(self, client: str) -> None:
        self.client = client

    def weights(self, features: np.ndarray, clients: Sequence[str]) -> np.ndarray:
        """1 for the chosen client, 0 for the others."""
        if self.client not in clients:
            raise RoutingError(f"single:{self.client}: no such client; clients are {', '.join(clients)}")
        w = np.zeros((len(features), len(clients)))
        w[:, list(clients).index(self.client)] = 1.0
        return w


class _Gate(torch.nn.Module):
    def __init__(self, features: int, hidden: int, clients: int) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(features, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, clients)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.net(x), dim=-1)


class LearnedRouting(Routing):
    """The MoR router: clusters, per-cluster competence, a gate MLP, a uniform floor and the cap."""

    def __init__(self, config: RouterConfig, clients: Sequence[str], centroids: np.ndarray) -> None:
        self.config = config
        self.clients = tuple(clients)
        self.centroids = np.asarray(centroids, dtype=np.float32)  # (C, H), in standardised features
        self.mean = np.zeros(self.centroids.shape[1], np.float32)
        self.scale = np.ones(self.centroids.shape[1], np.float32)
        self.competence = np.full((len(self.clients), len(self.centroids)), 0.5)  # (K, C)
        torch.manual_seed(config.seed)
        self.gate = _Gate(self.centroids.shape[1], config.hidden, len(self.clients))

    @classmethod
    def from_calibration_features(
        cls, config: RouterConfig, clients: Sequence[str], features: np.ndarray
    ) -> tuple[LearnedRouting, np.ndarray]:
        """Cluster the calibration prompts; return the router and each prompt's cluster id."""
        if len(features) < config.clusters:
            raise RoutingError(f"{len(features)} calibration prompts for {config.clusters} clusters")
        mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-6
        standardised = (features - mean) / scale
        # Unstandardised, a few large hidden dimensions decide the clusters; restarts avoid a poor optimum.
        kmeans = KMeans(n_clusters=config.clusters, n_init=10, random_state=config.seed).fit(standardised)
        router = cls(config, clients, kmeans.cluster_centers_)
        router.mean, router.scale = mean.astype(np.float32), scale.astype(np.float32)
        return router, kmeans.labels_.astype(np.int64)

    def fit(self, features: np.ndarray, clusters: np.ndarray, competence: np.ndarray) -> float:
        """Train the gate to give softmax(competence[:, cluster] / τ); returns the final KL divergence."""
        competence = np.asarray(competence, dtype=np.float64)
        if competence.shape != (len(self.clients), len(self.centroids)):
            raise RoutingError(
                f"competence must be (clients, clusters) = {(len(self.clients), len(self.centroids))}, "
                f"found {competence.shape}"
            )
        if not np.all(np.isfinite(competence)) or competence.min() < 0 or competence.max() > 1:
            raise RoutingError("competence values must be accuracies in [0, 1]")
        self.competence = competence
        target = torch.softmax(torch.tensor(competence[:, clusters].T / self.config.temperature), dim=-1)
        x = torch.tensor(self._standardise(features))
        optimizer = torch.optim.Adam(self.gate.parameters(), lr=1e-2)
        loss = torch.tensor(0.0)
        for _ in range(self.config.epochs):
            loss = torch.nn.functional.kl_div(self.gate(x), target.float(), reduction="batchmean")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return float(loss.item())

    def weights(self, features: np.ndarray, clients: Sequence[str]) -> np.ndarray:
        """Gate output mixed with the uniform floor, capped at ``w_max``."""
        if tuple(clients) != self.clients:
            raise RoutingError(f"router was fitted for clients {self.clients}, asked for {tuple(clients)}")
        with torch.no_grad():
            gate = torch.exp(self.gate(torch.tensor(self._standardise(features)))).double().numpy()
        k = len(self.clients)
        mixed = (1 - self.config.uniform_floor) * gate + self.config.uniform_floor / k
        return cap_weights(mixed, self.config.w_max)

    def save(self, folder: Path) -> None:
        """Write the router (config, clients, centroids, competence, gate weights) to ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        state = {
            "format": ROUTER_FORMAT,
            "config": asdict(self.config),
            "clients": list(self.clients),
            "centroids": self.centroids.tolist(),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "competence": self.competence.tolist(),
        }
        (folder / "router.json").write_text(json.dumps(state) + "\n")
        torch.save(self.gate.state_dict(), folder / "gate.pt")

    @classmethod
    def load(cls, folder: Path) -> LearnedRouting:
        """Read a router that ``save`` wrote."""
        try:
            state = json.loads((folder / "router.json").read_text())
            if state.get("format") != ROUTER_FORMAT:
                raise RoutingError(
                    f"{folder / 'router.json'} is in router format {state.get('format', 1)}, this version "
                    f"reads format {ROUTER_FORMAT} (other prompt features); start a new run folder"
                )
            router = cls(RouterConfig(**state["config"]), state["clients"], np.array(state["centroids"]))
            router.mean = np.array(state["mean"], np.float32)
            router.scale = np.array(state["scale"], np.float32)
            router.competence = np.array(state["competence"])
            router.gate.load_state_dict(torch.load(folder / "gate.pt", weights_only=True))
        except (OSError, KeyError, ValueError, RuntimeError) as error:
            raise RoutingError(f"cannot load the router from {folder}: {error}") from None
        return router

    def _standardise(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.scale).astype(np.float32)
