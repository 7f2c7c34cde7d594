"""Fitting the MoR router: public calibration pairs, clusters, the clients' per-cluster competence.

The calibration pairs are public (the calibration split): gold answer against a wrong answer of the
same kind. Each client answers with its reward model's pairwise accuracy per cluster — K × C numbers,
post-processing of its DP model on public inputs, so they cost no privacy budget. A client that does
not answer is assumed at chance (0.5) everywhere.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping, Sequence
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
    """Up to ``items`` public pairs (image, question, chosen = gold, rejected = wrong of the same kind)."""
    rows = np.random.default_rng(seed).permutation(len(calibration))[:items]
    subset = calibration.select(sorted(rows.tolist()))
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


def fit_router(
    config: RouterConfig,
    clients: Sequence[str],
    pairs: datasets.Dataset,
    features: FeatureFn,
    calibrate: Calibrate,
    *,
    request_id: str,
) -> tuple[LearnedRouting, np.ndarray]:
    """Cluster the pairs' prompts, ask every client for its competence, fit the gate.

    ``calibrate`` is the federation's fan-out in a deployment (``FederationService.calibrate``) and a
    direct call of each reward model in ``secure-mor experiment``. Returns the router and the
    competence matrix (K × C) it was fitted to.
    """
    phi = features(list(pairs["image"]), list(pairs["question"]))
    router, clusters = LearnedRouting.from_calibration_features(config, clients, phi)
    replies = calibrate(calibration_request(request_id, pairs, clusters))
    competence = np.full((len(clients), config.clusters), 0.5)
    for k, identity in enumerate(clients):
        for cluster in replies[identity].clusters if identity in replies else ():
            if cluster.cluster < config.clusters and 0.0 <= cluster.accuracy <= 1.0:
                competence[k, cluster.cluster] = cluster.accuracy
    router.fit(phi, clusters, competence)
    return router, competence


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
    router, competence = fit_router(config, clients, pairs, features, calibrate, request_id=request_id)
    router.save(folder)
    (folder / "competence.json").write_text(
        json.dumps({"clients": list(clients), "competence": competence.tolist()}) + "\n"
    )
    return router
