"""Public pretraining of the compact reward model: it learns on PUBLIC pairs before DP fine-tuning.

Standard DP practice: pretrain on public data, fine-tune on private data under DP. The public labelled
data here is the ``foundation`` split — the base VLM's pretraining data, which every party may read and
which can be made to hold few questions of the clients' domains (``data.foundation_limits``); the
server's prompts and calibration answers are not used, and a client's private shard is never touched.
Training on public data costs no privacy budget: DP protects the private pairs, and a function of public
data alone reveals nothing about them. The ledger records only the DP run on the private pairs; the
model folder names the public recipe it started from.

Recipe: preference pairs built from the foundation split exactly as a client builds its own (chosen = gold,
rejected = another answer of the same kind), at most ``public_pairs_per_kind`` per question kind (the
public data is three-quarters yes/no questions; balancing the kinds teaches the encoder shapes as well),
plus, for a share ``off_kind_share`` of them, a pair whose rejected answer is of another kind ("teal" to
"is there a circle?"). A client's private pairs never contrast kinds, and a reward model that has never
seen an off-kind answer may score it highly: GRPO then learns to answer every question with a colour.
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
from secure_mor.data import FederatedSplits, build_preference_pairs, dataset_fingerprint
from secure_mor.data.preferences import answers_by_kind

RECIPE_VERSION = 7
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
    off_kind_share: float
    """Share of the public pairs repeated with a rejected answer of another kind."""
    data: str
    """Content fingerprint of the foundation split: its rows and image bytes, not its path, so weights
    made from other data or another split are never reused."""
    version: int = RECIPE_VERSION

    @classmethod
    def of(cls, config: RewardModelConfig, splits: FederatedSplits) -> PublicRecipe:
        """The recipe of ``config``'s public pretraining on the public splits of ``splits``."""
        return cls(
            hidden=config.hidden,
            vocab_buckets=config.vocab_buckets,
            epochs=config.public_epochs,
            pairs_per_kind=config.public_pairs_per_kind,
            batch_size=128,
            learning_rate=3e-3,
            seed=config.seed,
            off_kind_share=0.25,
            data=dataset_fingerprint(splits.foundation),
        )

    @property
    def key(self) -> str:
        """A short hash of the recipe: its cache folder's name."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def public_pairs(
    splits: FederatedSplits, pairs_per_kind: int, seed: int, off_kind_share: float = 0.0
) -> datasets.Dataset:
    """Preference pairs of the foundation split, at most ``pairs_per_kind`` per kind (0 = all).

    Wrong answers are drawn from every public split's answers of the same kind (the answer vocabulary is
    public). With ``off_kind_share`` > 0, that share of the pairs is added again with an off-kind
    rejected answer.
    """
    vocabulary = answers_by_kind(splits.public)
    pairs = build_preference_pairs(splits.foundation, seed=seed, vocabulary=vocabulary)
    kinds = np.array(pairs["kind"])
    rng = np.random.default_rng(seed)
    keep = [
        rng.permutation(np.flatnonzero(kinds == kind))[: pairs_per_kind or None]
        for kind in sorted(set(kinds))
    ]
    pairs = pairs.select(sorted(np.concatenate(keep).tolist()))
    if off_kind_share <= 0:
        return pairs
    extra = pairs.select(sorted(rng.permutation(len(pairs))[: round(off_kind_share * len(pairs))].tolist()))
    return datasets.concatenate_datasets([pairs, off_kind(extra, vocabulary, rng)])


def off_kind(
    pairs: datasets.Dataset, vocabulary: dict[str, tuple[str, ...]], rng: np.random.Generator
) -> datasets.Dataset:
    """``pairs`` with each rejected answer replaced by a random answer of another kind."""
    others = {
        kind: [a for other, answers in vocabulary.items() if other != kind for a in answers]
        for kind in vocabulary
    }
    rejected = [others[kind][int(rng.integers(len(others[kind])))] for kind in pairs["kind"]]
    return pairs.remove_columns("rejected").add_column("rejected", rejected).cast(pairs.features)


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
    config: RewardModelConfig, splits: FederatedSplits, progress: Progress | None = None
) -> tuple[StateDict, str]:
    """The publicly pretrained compact weights of ``config`` and their recipe key; cached by that key.

    The cache is written atomically (a temporary file renamed into place), so concurrent clients on
    one machine at worst both compute the same weights.
    """
    recipe = PublicRecipe.of(config, splits)
    folder = config.public_cache.expanduser() / recipe.key
    path = folder / WEIGHTS
    if path.exists():
        return torch.load(path, weights_only=True), recipe.key
    pairs = public_pairs(splits, recipe.pairs_per_kind, recipe.seed, recipe.off_kind_share)
    state = pretrain_compact(recipe, pairs, progress)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RECIPE).write_text(json.dumps(asdict(recipe), indent=2, sort_keys=True) + "\n")
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".tmp", delete=False) as file:
        torch.save(state, file)
    Path(file.name).replace(path)
    return state, recipe.key


__all__ = ["PublicRecipe", "StateDict", "off_kind", "pretrain_compact", "public_pairs", "public_state"]
