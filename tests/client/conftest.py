"""Fixtures for the client tests: a few preference pairs, reward models of both architectures."""

from __future__ import annotations

import datasets
import pytest

from secure_mor.client.config import RewardModelConfig
from secure_mor.client.reward_model import RewardModel, build_reward_model
from secure_mor.data import FederatedSplits, build_preference_pairs


@pytest.fixture(scope="session")
def pairs(easy_splits: FederatedSplits) -> datasets.Dataset:
    """32 colour pairs of the easy-VQA colour client's shard."""
    return build_preference_pairs(easy_splits.clients["color"].select(range(32)), seed=0)


def texts(pairs: datasets.Dataset) -> list[str]:
    return [*pairs["question"], *pairs["chosen"], *pairs["rejected"]]


@pytest.fixture
def compact(pairs: datasets.Dataset) -> RewardModel:
    return build_reward_model(RewardModelConfig(architecture="compact", hidden=16, vocab_buckets=64))


@pytest.fixture
def lora(pairs: datasets.Dataset) -> RewardModel:
    return build_reward_model(RewardModelConfig(architecture="lora-vlm", lora_rank=2), texts(pairs))
