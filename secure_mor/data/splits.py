"""Deterministic, seeded, image-disjoint splits: foundation, prompts, calibration, client shards, test.

Images (not questions) are shuffled with the seed and cut by the configured fractions, so no image is
in two splits. The client pool is then shared out: ``by-kind`` gives each client the questions of one
kind on its own images, with image shares inversely proportional to how many questions of that kind an
image carries (so the shards hold similar numbers of questions) — or, with ``clients.images =
"shared"``, every question of its kind on all of the pool's images (the shards then share images but
never a question, and still no public or test image); ``dirichlet`` splits the pool's images
evenly, draws a kind mixture p_k ~ Dir(alpha) per client and keeps a
question of kind c on client k's images with probability p_k[c] / max(p_k).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import datasets
import numpy as np

from secure_mor.data.config import DataConfig
from secure_mor.data.sources import load_vqa
from secure_mor.errors import DataError

SPLIT_NAMES = ("foundation", "prompts", "calibration")


@dataclass(frozen=True)
class FederatedSplits:
    """The five pairwise image-disjoint splits of one run."""

    foundation: datasets.Dataset
    prompts: datasets.Dataset
    calibration: datasets.Dataset
    clients: Mapping[str, datasets.Dataset]
    test: datasets.Dataset

    @property
    def public(self) -> datasets.Dataset:
        """The three public splits in one (foundation, prompts, calibration): what every party may read."""
        return datasets.concatenate_datasets([self.foundation, self.prompts, self.calibration])

    def named(self) -> dict[str, datasets.Dataset]:
        """Every split by a display name (client shards as ``client:<name>``)."""
        out = {"foundation": self.foundation, "prompts": self.prompts, "calibration": self.calibration}
        out.update({f"client:{name}": shard for name, shard in self.clients.items()})
        out["test"] = self.test
        return out


def load_splits(config: DataConfig) -> FederatedSplits:
    """Load the configured source and cut it into the five splits."""
    train = load_vqa(config, config.train_split)
    if config.test_split:  # None or "" hold test images out of the training split instead
        return make_splits(train, config, test=load_vqa(config, config.test_split))
    return make_splits(train, config)


def make_splits(
    train: datasets.Dataset, config: DataConfig, test: datasets.Dataset | None = None
) -> FederatedSplits:
    """Cut ``train`` into the splits by image; hold out ``fractions.test`` of its images if no ``test``."""
    rng = np.random.default_rng(config.seed)
    image_ids = np.array(train["image_id"])
    unique = np.array(sorted(set(image_ids.tolist())))
    order = unique[rng.permutation(len(unique))]
    fractions = config.fractions
    shares = [fractions.foundation, fractions.prompts, fractions.calibration, fractions.clients]
    if test is None:  # hold out the test images first; the other fractions share what remains
        shares = [share * (1.0 - fractions.test) for share in shares] + [fractions.test]
    groups = _cut(order, shares)
    by_image = _rows_by_image(image_ids)
    parts = [train.select(_rows(group, by_image)) for group in groups[:3]]
    for name, part in zip(SPLIT_NAMES, parts, strict=True):
        if len(part) == 0:
            raise DataError(f"split {name!r} is empty: raise data.fractions.{name} or use a larger dataset")
    clients = _client_shards(train, groups[3], by_image, config, rng)
    held_out = test if test is not None else train.select(_rows(groups[4], by_image))
    foundation, prompts, calibration = parts
    foundation = _limit_kinds(foundation, config)
    return FederatedSplits(foundation, prompts, calibration, MappingProxyType(clients), held_out)


def _limit_kinds(foundation: datasets.Dataset, config: DataConfig) -> datasets.Dataset:
    """The foundation split with at most ``questions`` of each kind that ``foundation_limits`` names."""
    limits = {limit.kind: limit.questions for limit in config.foundation_limits}
    if not limits:
        return foundation
    kinds = np.array(foundation["kind"])
    present = sorted(set(kinds.tolist()))
    unknown = sorted(set(limits) - set(present))
    if unknown:
        raise DataError(
            f"data.foundation_limits names kind(s) {', '.join(map(repr, unknown))}; the foundation split "
            f"holds {', '.join(map(repr, present))}; limit those kinds, or write foundation_limits = []"
        )
    rng = np.random.default_rng([config.seed, 1])  # its own stream: the client shards stay as without it
    keep = [
        row
        for kind in present
        for row in rng.permutation(np.flatnonzero(kinds == kind))[: limits.get(kind, len(kinds))].tolist()
    ]
    if not keep:
        raise DataError("data.foundation_limits leaves the foundation split empty")
    return foundation.select(sorted(keep))


def _cut(order: np.ndarray, shares: Sequence[float]) -> list[np.ndarray]:
    bounds = np.round(np.cumsum([0.0, *shares]) * len(order)).astype(int)
    return [order[bounds[i] : bounds[i + 1]] for i in range(len(shares))]


def _rows_by_image(image_ids: np.ndarray) -> dict[str, list[int]]:
    rows: dict[str, list[int]] = {}
    for row, image_id in enumerate(image_ids.tolist()):
        rows.setdefault(image_id, []).append(row)
    return rows


def _rows(images: np.ndarray, by_image: Mapping[str, list[int]]) -> list[int]:
    return sorted(row for image in images.tolist() for row in by_image[image])


def _client_shards(
    train: datasets.Dataset,
    pool: np.ndarray,
    by_image: Mapping[str, list[int]],
    config: DataConfig,
    rng: np.random.Generator,
) -> dict[str, datasets.Dataset]:
    split = config.clients
    kinds_of_rows = train["kind"]
    kinds = sorted(set(kinds_of_rows))
    count = len(kinds) if split.mode == "by-kind" else split.count
    default_names = kinds if split.mode == "by-kind" else [f"client-{i}" for i in range(count)]
    names = list(split.names) or default_names
    if len(names) != count:
        raise DataError(
            f"clients.names has {len(names)} name(s) but the {split.mode} split makes {count} client(s)"
        )
    if split.mode == "by-kind" and split.images == "shared":
        keep = np.eye(len(kinds))
        parts = [pool] * len(kinds)
    elif split.mode == "by-kind":
        keep = np.eye(len(kinds))
        counts = Counter(kinds_of_rows[row] for row in _rows(pool, by_image))
        per_kind = np.array([counts[kind] for kind in kinds])
        inverse = 1.0 / np.maximum(per_kind, 1)
        parts = _cut(pool, inverse / inverse.sum())
    else:
        mixture = rng.dirichlet(np.full(len(kinds), split.alpha), size=count)
        keep = mixture / mixture.max(axis=1, keepdims=True)
        parts = np.array_split(pool, count)
    shards: dict[str, datasets.Dataset] = {}
    for k, (name, images) in enumerate(zip(names, parts, strict=True)):
        rows = [
            row
            for row in _rows(images, by_image)
            if (p := keep[k, kinds.index(kinds_of_rows[row])]) >= 1.0 or rng.random() < p
        ]
        if not rows:
            raise DataError(f"client shard {name!r} is empty: raise data.fractions.clients or use more data")
        shards[name] = train.select(rows)
    return shards
