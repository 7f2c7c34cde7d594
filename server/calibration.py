"""Fitting the MoR router: public calibration pairs, clusters, the clients' per-cluster competence.

The calibration pairs are public (the calibration split): gold answer against a wrong answer of the
same kind, drawn evenly over the question kinds. Each client answers with its reward model's pairwise
accuracy per cluster — K × C numbers, post-processing of its DP model on public inputs, so they cost no
privacy budget — which the server shrinks towards chance by a prior of ``prior_pairs`` pairs. A client
that does not answer is assumed at chance (0.5) everywhere.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np

from secure_mor.data import answers_by_kind, build_preference_pairs
from secure_mor.protocol import scoring as sp
from secure_mor.server.errors import RoutingError
from secure_mor.server.mixture import FeatureFn
from secure_mor.server.routing import LearnedRouting, Routing, SingleRouting, UniformRouting
from secure_mor.server.settings import RouterConfig, RoutingSpec


def calibration_pairs(calibration: datasets.Dataset, items: int, seed: int) -> datasets.Dataset:
    """Up to ``items`` public pairs (image, question, chosen = gold, rejected = wrong of the same kind).

    The questions are drawn evenly over the kinds (all of a kind that has fewer), not in the split's own
    mix: easy-VQA is three-quarters yes/no, and a competence measured on a handful of colour questions
    is mostly noise.
    """
    rng = np.random.default_rng(seed)
    kinds = np.array(calibration["kind"])
    queues = [list(rng.permutation(np.flatnonzero(kinds == kind))) for kind in sorted(set(kinds.tolist()))]
    rows: list[int] = []
    while len(rows) < items and any(queues):
        for queue in queues:
            if queue and len(rows) < items:
                rows.append(int(queue.pop()))
    subset = calibration.select(sorted(rows))
    return build_preference_pairs(subset, seed=seed, vocabulary=answers_by_kind(calibration))


def calibration_request(
    request_id: str, pairs: datasets.Dataset, clusters: np.ndarray
) -> sp.CalibrationRequest:
    """The request the clients answer: each pair with its cluster id, each image sent once."""
    refs: dict[str, str] = {}
    images: dict[str, bytes] = {}
    items = []
    for row, cluster in zip(pairs, clusters, strict=True):
        if row["image_id"] not in refs:
            refs[row["image_id"]] = str(len(refs))
            buffer = io.BytesIO()
            row["image"].save(buffer, format="PNG")
            images[refs[row["image_id"]]] = buffer.getvalue()
        items.append(
            sp.CalibrationItem(
                image_ref=refs[row["image_id"]],
                question=row["question"],
                chosen=row["chosen"],
                rejected=row["rejected"],
                cluster=int(cluster),
            )
        )
    return sp.CalibrationRequest(request_id=request_id, items=items, images=images)


Calibrate = Callable[[sp.CalibrationRequest], Mapping[str, sp.CalibrationReply]]
"""Sends a calibration request to the clients; returns the replies that came, by client identity."""


@dataclass(frozen=True)
class Calibration:
    """What one calibration measured, as saved in ``competence.json``.

    The clients' raw replies, the competence the gate was fitted to, and what each cluster holds (pairs,
    and pairs per question kind).
    """

    clients: tuple[str, ...]
    replies: np.ndarray
    """(K, C) accuracies as the clients replied; NaN where a client gave none."""
    competence: np.ndarray
    """(K, C) replies shrunk towards 0.5 by ``RouterConfig.prior_pairs``; 0.5 where no reply came."""
    pairs: np.ndarray
    """(C,) calibration pairs per cluster."""
    kinds: dict[str, list[int]]
    """Pairs per cluster of each question kind: how the clusters follow the kinds."""

    def to_json(self) -> dict[str, object]:
        """The JSON object of ``competence.json``."""
        return {
            "clients": list(self.clients),
            "competence": self.competence.tolist(),
            "replies": [[None if np.isnan(a) else a for a in row] for row in self.replies.tolist()],
            "pairs_per_cluster": self.pairs.tolist(),
            "kinds_per_cluster": self.kinds,
        }


def shrunk_competence(replies: np.ndarray, pairs: np.ndarray, prior_pairs: float) -> np.ndarray:
    """Each reply as if ``prior_pairs`` more pairs had been answered at chance; 0.5 for a missing reply."""
    answered = np.where(np.isnan(replies), 0.5, replies)
    counts = np.where(np.isnan(replies), 0.0, pairs[None, :].astype(np.float64))
    total = counts + prior_pairs
    return np.where(total > 0, (answered * counts + 0.5 * prior_pairs) / np.where(total > 0, total, 1), 0.5)


def fit_router(
    config: RouterConfig,
    clients: Sequence[str],
    pairs: datasets.Dataset,
    features: FeatureFn,
    calibrate: Calibrate,
    *,
    request_id: str,
) -> tuple[LearnedRouting, Calibration]:
    """Cluster the pairs' prompts, ask every client for its competence, fit the gate.

    ``calibrate`` is the federation's fan-out in a deployment (``FederationService.calibrate``) and a
    direct call of each reward model in ``secure-mor experiment``. Returns the router and what the
    calibration measured.
    """
    phi = features(list(pairs["image"]), list(pairs["question"]))
    router, clusters = LearnedRouting.from_calibration_features(config, clients, phi)
    replies = calibrate(calibration_request(request_id, pairs, clusters))
    raw = np.full((len(clients), config.clusters), np.nan)
    for k, identity in enumerate(clients):
        for cluster in replies[identity].clusters if identity in replies else ():
            if cluster.cluster < config.clusters and 0.0 <= cluster.accuracy <= 1.0:
                raw[k, cluster.cluster] = cluster.accuracy
    counts = np.bincount(clusters, minlength=config.clusters)
    competence = shrunk_competence(raw, counts, config.prior_pairs)
    router.fit(phi, clusters, competence)
    kinds = np.array(pairs["kind"])
    per_kind = {
        kind: np.bincount(clusters[kinds == kind], minlength=config.clusters).tolist()
        for kind in sorted(set(kinds.tolist()))
    }
    return router, Calibration(tuple(clients), raw, competence, counts, per_kind)


def build_routing(
    spec: RoutingSpec,
    config: RouterConfig,
    clients: Sequence[str],
    calibration: datasets.Dataset,
    features: FeatureFn,
    calibrate: Calibrate,
    *,
    request_id: str,
    folder: Path,
) -> Routing:
    """The routing that ``spec`` names over ``clients`` (identities); a learned router is saved in ``folder``.

    One place for every reward path (the federation's and the experiment's in-process one). A router
    already saved in ``folder`` (a resumed run) is loaded instead of asking the clients again.
    """
    if spec.kind == "uniform":
        return UniformRouting()
    if spec.kind == "single":
        return SingleRouting(f"client:{spec.client}")
    if spec.kind != "router":
        raise RoutingError(f"routing {spec} uses no client weights")
    if (folder / "router.json").exists():
        return LearnedRouting.load(folder)
    pairs = calibration_pairs(calibration, config.calibration_items, config.seed)
    router, measured = fit_router(config, clients, pairs, features, calibrate, request_id=request_id)
    router.save(folder)
    (folder / "competence.json").write_text(json.dumps(measured.to_json()) + "\n")
    return router
