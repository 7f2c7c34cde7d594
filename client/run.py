"""``secure-mor client train-rm``: load the client's shard, split pairs, train under DP, save, record.

The shard's questions become preference pairs (``secure_mor.data.build_preference_pairs``); a share of
its IMAGES (not questions) is held out, so no held-out pair shares an image with a training pair. The
held-out pairs measure pairwise accuracy and fit the score's temperature; they are never trained on.
A compact model first learns on the PUBLIC splits (``public_init``; cached, no privacy cost).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import datasets
import numpy as np

from secure_mor.client.config import ClientConfig
from secure_mor.client.errors import ClientError
from secure_mor.client.ledger import PrivacyLedger
from secure_mor.client.public_init import StateDict, off_kind, public_state
from secure_mor.client.reward_model import RewardModel, build_reward_model
from secure_mor.client.training import Progress, TrainResult, train_reward_model
from secure_mor.crypto.signing import SigningKey
from secure_mor.data import (
    FederatedSplits,
    answer_candidates,
    answers_by_kind,
    build_preference_pairs,
    load_splits,
)


@dataclass(frozen=True)
class PairSplit:
    """A client's training and held-out preference pairs."""

    train: datasets.Dataset
    heldout: datasets.Dataset


OFF_KIND_SHARE = {"compact": 0.0, "lora-vlm": 0.25}
"""``reward_model.off_kind_share`` when unset (the compact model learns off-kind answers in public)."""


def client_pairs(config: ClientConfig, splits: FederatedSplits | None = None) -> PairSplit:
    """The client's pairs, split by image into training and held-out pairs (``splits``: loaded if None)."""
    splits = splits or load_splits(config.data)
    shard_name = config.shard
    if shard_name not in splits.clients:
        raise ClientError(
            f"reward_model.shard: no client shard {shard_name!r} in the data split; "
            f"expected one of: {', '.join(splits.clients)}"
        )
    rm = config.reward_model
    pairs = build_preference_pairs(splits.clients[shard_name], seed=rm.seed, label_noise=rm.label_noise)
    if rm.limit:
        pairs = pairs.select(range(min(rm.limit, len(pairs))))
    images = np.array(sorted(set(pairs["image_id"])))
    rng = np.random.default_rng(rm.seed)
    held = set(
        images[rng.permutation(len(images))[: max(1, round(rm.heldout_fraction * len(images)))]].tolist()
    )
    in_heldout = [image_id in held for image_id in pairs["image_id"]]
    heldout = pairs.select([i for i, h in enumerate(in_heldout) if h])
    train = pairs.select([i for i, h in enumerate(in_heldout) if not h])
    if len(train) < 2 or len(heldout) < 1:
        raise ClientError(f"shard {shard_name!r} has too few pairs ({len(pairs)}) to train and hold out")
    return PairSplit(_with_off_kind(train, config, splits), heldout)


def _with_off_kind(
    train: datasets.Dataset, config: ClientConfig, splits: FederatedSplits
) -> datasets.Dataset:
    """``train`` with a share of its rejected answers replaced by answers of other kinds.

    In place, so each private pair still counts once; the held-out pairs keep measuring its own kind.
    """
    rm = config.reward_model
    share = rm.off_kind_share if rm.off_kind_share is not None else OFF_KIND_SHARE[rm.architecture]
    vocabulary = answers_by_kind(splits.public)
    if share <= 0 or len(vocabulary) < 2:
        return train
    rng = np.random.default_rng([rm.seed, 2])
    chosen = set(rng.permutation(len(train))[: round(share * len(train))].tolist())
    replaced = off_kind(train.select(sorted(chosen)), vocabulary, rng)["rejected"]
    new_rejected = iter(replaced)
    rejected = [next(new_rejected) if i in chosen else r for i, r in enumerate(train["rejected"])]
    return train.remove_columns("rejected").add_column("rejected", rejected).cast(train.features)


def open_ledger(config: ClientConfig) -> PrivacyLedger:
    """The client's privacy ledger, signed with the Ed25519 key of its kit."""
    signer = SigningKey.load(config.federation.identity, config.federation.signing_key)
    return PrivacyLedger(config.privacy.ledger, signer)


def public_start(
    config: ClientConfig, splits: FederatedSplits, progress: Progress | None = None
) -> tuple[StateDict | None, str | None]:
    """The compact model's publicly pretrained weights and recipe key; (None, None) where not configured."""
    rm = config.reward_model
    if rm.architecture != "compact" or not rm.public_pretraining:
        return None, None
    return public_state(rm, splits, progress)


def start_model(config: ClientConfig, splits: FederatedSplits) -> RewardModel:
    """The reward model that private training starts from: public weights only, no private pair seen.

    A compact model with public pretraining starts from its public weights; any other starts untrained.
    Measuring it beside the trained model shows what the private data added.
    """
    model = build_reward_model(config.reward_model, texts=list(splits.foundation["question"]))
    state, _ = public_start(config, splits)
    if state is not None:
        model.module.load_state_dict(state)
    return model


def train_from_config(
    config: ClientConfig,
    *,
    epsilon: float | None = None,
    out: Path | None = None,
    progress: Progress | None = None,
    splits: FederatedSplits | None = None,
) -> tuple[TrainResult, Path]:
    """Train the configured reward model (ε from ``epsilon`` or ``privacy.epsilon``), save it, record it.

    ``splits`` is ``config.data``'s split when the caller has loaded it already.
    """
    ledger = open_ledger(config)
    try:
        requested = config.privacy.epsilon if epsilon is None else epsilon
        if requested != float("inf"):
            ledger.check(requested, config.privacy.budget)  # before loading or training anything
        splits = splits or load_splits(config.data)
        split = client_pairs(config, splits)
        state, recipe = public_start(config, splits, progress)  # the pretraining's steps, if not cached
        result = train_reward_model(
            split.train,
            split.heldout,
            model_config=config.reward_model,
            training=config.training,
            privacy=config.privacy,
            epsilon=requested,
            ledger=ledger,
            progress=progress,
            initial_state=state,
            public_init=recipe,
        )
    finally:
        ledger.close()
    model = replace(result.model, candidates=answer_candidates(splits.public))
    result = replace(result, model=model)
    path = model.save(out or config.reward_model.out)
    return result, path
