"""Public pretraining of the compact reward model: it learns on PUBLIC pairs before DP fine-tuning.

Standard DP practice: pretrain on public data, fine-tune on private data under DP. The public data here
is the federation's public splits — ``foundation`` (the base VLM's pretraining data), ``prompts`` (the
server's GRPO prompts) and ``calibration`` (the router's calibration set) — which every party may read;
a client's private shard is never touched. Training on public data costs no privacy budget: DP protects
the private pairs, and a function of public data alone reveals nothing about them. The ledger records
only the DP run on the private pairs; the model folder names the public recipe it started from.

Recipe: preference pairs built from the public splits exactly as a client builds its own (chosen = gold,
rejected = another answer of the same kind), at most ``public_pairs_per_kind`` per question kind (the
public data is three-quarters yes/no questions; balancing the kinds teaches the encoder shapes as well),
Bradley–Terry loss, Adam, no DP. Only the recipe ships, never weights: a client computes the weights
itself once and caches them under ``public_cache/<hash of the recipe>/``, like the base VLM.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import datasets
import numpy as np
import torch
from torch.utils.data import DataLoader

from secure_mor.client.bt_loss import BradleyTerryLoss
from secure_mor.client.compact import CompactEncoder, CompactRewardModel
from secure_mor.client.config import RewardModelConfig
from secure_mor.client.training import Progress
from secure_mor.data import DataConfig, FederatedSplits, build_preference_pairs

RECIPE_VERSION = 1
WEIGHTS = "compact_public.pt"
RECIPE = "recipe.json"

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class PublicRecipe:
    """Everything that determines the publicly pretrained weights (its hash names the cache folder)."""

    hidden: int
    vocab_buckets: int
    epochs: int
    pairs_per_kind: int
    batch_size: int
    learning_rate: float
    seed: int
    data: str
    """The data config as canonical JSON: source, columns, fractions and seed fix the public splits."""
    version: int = RECIPE_VERSION

    @classmethod
    def of(cls, config: RewardModelConfig, data: DataConfig) -> PublicRecipe:
        """The recipe of ``config``'s public pretraining on the public splits of ``data``."""
        return cls(
            hidden=config.hidden,
            vocab_buckets=config.vocab_buckets,
            epochs=config.public_epochs,
            pairs_per_kind=config.public_pairs_per_kind,
            batch_size=128,
            learning_rate=3e-3,
            seed=config.seed,
            data=json.dumps(asdict(data), default=str, sort_keys=True),
        )

    @property
    def key(self) -> str:
        """A short hash of the recipe: its cache folder's name."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def public_pairs(splits: FederatedSplits, pairs_per_kind: int, seed: int) -> datasets.Dataset:
    """Preference pairs of the public splits, at most ``pairs_per_kind`` per kind (0 = all), shuffled."""
    public = datasets.concatenate_datasets([splits.foundation, splits.prompts, splits.calibration])
    pairs = build_preference_pairs(public, seed=seed)
    kinds = np.array(pairs["kind"])
    rng = np.random.default_rng(seed)
    keep = [
        rng.permutation(np.flatnonzero(kinds == kind))[: pairs_per_kind or None]
        for kind in sorted(set(kinds))
    ]
    return pairs.select(sorted(np.concatenate(keep).tolist()))


def pretrain_compact(
    recipe: PublicRecipe, pairs: datasets.Dataset, progress: Progress | None = None
) -> StateDict:
    """Train a compact reward model on public ``pairs`` without DP; return its state dict."""
    torch.manual_seed(recipe.seed)
    module = CompactRewardModel(recipe.vocab_buckets, recipe.hidden)
    data = CompactEncoder(recipe.vocab_buckets).pairs(pairs)
    optimizer = torch.optim.Adam(module.parameters(), lr=recipe.learning_rate)
    criterion = BradleyTerryLoss()
    generator = torch.Generator().manual_seed(recipe.seed)
    loader = DataLoader(data, batch_size=recipe.batch_size, shuffle=True, generator=generator)
    total, step = recipe.epochs * len(loader), 0
    module.train()
    for _ in range(recipe.epochs):
        for batch in loader:
            loss = criterion(module(*batch))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            step += 1
            if progress is not None:
                progress(step, total, float(loss.item()))
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def public_state(
    config: RewardModelConfig,
    data: DataConfig,
    splits: FederatedSplits,
    progress: Progress | None = None,
) -> tuple[StateDict, str]:
    """The publicly pretrained compact weights of ``config`` and their recipe key; cached by that key.

    The cache is written atomically (a temporary file renamed into place), so concurrent clients on
    one machine at worst both compute the same weights.
    """
    recipe = PublicRecipe.of(config, data)
    folder = config.public_cache.expanduser() / recipe.key
    path = folder / WEIGHTS
    if path.exists():
        return torch.load(path, weights_only=True), recipe.key
    state = pretrain_compact(recipe, public_pairs(splits, recipe.pairs_per_kind, recipe.seed), progress)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RECIPE).write_text(json.dumps(asdict(recipe), indent=2, sort_keys=True) + "\n")
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".tmp", delete=False) as file:
        torch.save(state, file)
    Path(file.name).replace(path)
    return state, recipe.key


__all__ = ["PublicRecipe", "StateDict", "pretrain_compact", "public_pairs", "public_state"]
