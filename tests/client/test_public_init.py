"""Public pretraining of the compact model: public data only, cached by recipe, frozen encoders under DP.

The public start must never read a client's shard (it is computed from the public splits, with no privacy
cost); it is cached by a hash of its recipe; under DP the frozen encoders must not move and the ledger
still records the run. (That ghost clipping's per-pair norms with frozen encoders equal per-pair autograd
norms is checked with the whole model's in ``test_per_pair_gradients.py``.)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from secure_mor.client import public_init
from secure_mor.client.compact import CompactRewardModel
from secure_mor.client.config import PrivacyConfig, RewardModelConfig, TrainingConfig
from secure_mor.client.ledger import DP_RUN, PrivacyLedger
from secure_mor.client.public_init import PublicRecipe, public_pairs, public_state
from secure_mor.client.training import train_reward_model
from secure_mor.crypto.signing import SigningKey
from secure_mor.data import FederatedSplits
from secure_mor.data.preferences import answers_by_kind

TINY = RewardModelConfig(
    architecture="compact", hidden=8, vocab_buckets=32, public_epochs=1, public_pairs_per_kind=8
)


def test_public_pairs_come_from_the_public_splits_only(easy_splits: FederatedSplits) -> None:
    pairs = public_pairs(easy_splits, pairs_per_kind=8, seed=0)
    assert len(pairs) == 8 * len(set(pairs["kind"]))
    public = {
        *easy_splits.foundation["image_id"],
        *easy_splits.prompts["image_id"],
        *easy_splits.calibration["image_id"],
    }
    private = {image for shard in easy_splits.clients.values() for image in shard["image_id"]}
    assert set(pairs["image_id"]) <= public
    assert not set(pairs["image_id"]) & private


def test_off_kind_pairs_reject_an_answer_of_another_kind(easy_splits: FederatedSplits) -> None:
    plain = public_pairs(easy_splits, pairs_per_kind=8, seed=0)
    pairs = public_pairs(easy_splits, pairs_per_kind=8, seed=0, off_kind_share=0.25)
    assert len(pairs) == len(plain) + round(0.25 * len(plain))
    assert pairs.select(range(len(plain)))["rejected"] == plain["rejected"]
    vocabulary = answers_by_kind(easy_splits.foundation)
    added = pairs.select(range(len(plain), len(pairs)))
    for kind, chosen, rejected in zip(added["kind"], added["chosen"], added["rejected"], strict=True):
        assert chosen in vocabulary[kind]
        assert rejected not in vocabulary[kind]
        assert any(rejected in answers for answers in vocabulary.values())


def test_public_state_is_cached_by_recipe(
    easy_splits: FederatedSplits, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = dataclasses.replace(TINY, public_cache=tmp_path)
    state, key = public_state(config, easy_splits)
    assert key == PublicRecipe.of(config, easy_splits).key
    assert (tmp_path / key / public_init.WEIGHTS).is_file()
    assert set(state) == set(CompactRewardModel(32, 8).state_dict())

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached weights should have been reused")

    monkeypatch.setattr(public_init, "pretrain_compact", no_training)
    again, same = public_state(config, easy_splits)
    assert same == key
    for name, tensor in state.items():
        torch.testing.assert_close(again[name], tensor)
    other = dataclasses.replace(config, public_epochs=2)
    assert PublicRecipe.of(other, easy_splits).key != key  # another recipe, another cache entry


def test_dp_run_from_the_public_start_keeps_the_encoders_frozen(pairs, tmp_path: Path) -> None:
    state = {k: v.clone() for k, v in CompactRewardModel(32, 8).state_dict().items()}
    ledger = PrivacyLedger(tmp_path / "ledger.jsonl", SigningKey.generate("client:alice"))
    result = train_reward_model(
        pairs.select(range(24)),
        pairs.select(range(24, 32)),
        model_config=TINY,
        training=TrainingConfig(epochs=2, batch_size=8, physical_batch_size=4, learning_rate=0.1),
        privacy=PrivacyConfig(epsilon=8.0, delta=1e-3, budget=10.0),
        epsilon=8.0,
        ledger=ledger,
        initial_state=state,
        public_init="recipe-key",
    )
    trained = result.model.module.state_dict()
    for name, tensor in state.items():
        moved = not torch.equal(trained[name], tensor)
        frozen = name.startswith(("conv", "question_embed", "answer_embed"))
        assert moved != frozen, name  # convolutions and embeddings frozen; every Linear layer trained
    assert result.model.settings["public_init"] == "recipe-key"
    assert result.grad_sample_mode == "ghost"
    assert ledger.entries[-1].kind == DP_RUN
