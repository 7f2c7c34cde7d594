"""The privacy ledger: ε recomputes from the recorded events, the budget refuses, tampering is caught."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import datasets
import pytest

from secure_mor.client.config import PrivacyConfig, RewardModelConfig, TrainingConfig, load_client_config
from secure_mor.client.errors import BudgetExceededError
from secure_mor.client.ledger import DP_RUN, NON_PRIVATE_RUN, PrivacyLedger, recompute_epsilon
from secure_mor.client.training import train_reward_model
from secure_mor.crypto.errors import LogIntegrityError
from secure_mor.crypto.signed_log import read_log
from secure_mor.crypto.signing import SigningKey

TINY = RewardModelConfig(architecture="compact", hidden=8, vocab_buckets=32)
FAST = TrainingConfig(epochs=1, batch_size=8, physical_batch_size=4)


def train(pairs: datasets.Dataset, ledger: PrivacyLedger, epsilon: float, budget: float = 10.0):
    return train_reward_model(
        pairs.select(range(24)),
        pairs.select(range(24, 32)),
        model_config=TINY,
        training=FAST,
        privacy=PrivacyConfig(epsilon=epsilon, delta=1e-3, budget=budget),
        epsilon=epsilon,
        ledger=ledger,
    )


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate("client:alice")


def test_ledger_epsilon_equals_a_fresh_prv_recomputation(pairs, key: SigningKey, tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger = PrivacyLedger(path, key)
    result = train(pairs, ledger, epsilon=2.0)
    ledger.close()
    (entry,) = read_log(path, {key.identity: key.public})  # verifies chain and signature
    assert entry.kind == DP_RUN
    assert entry.author == "client:alice"
    payload = entry.payload
    assert payload["privacy_unit"] == "preference_pair"
    assert payload["dataset_size"] == 24
    assert payload["delta"] == 1e-3
    assert payload["max_grad_norm"] == 1.0
    assert payload["accountant"] == "prv"
    assert payload["opacus_version"]
    assert payload["steps"] == result.steps > 0
    assert payload["sample_rate"] == pytest.approx(8 / 24)
    assert payload["epsilon_budget"] == 10.0
    assert payload["epsilon_requested"] == 2.0
    assert payload["epsilon"] == pytest.approx(recompute_epsilon(payload), rel=1e-6)
    assert 1.5 < payload["epsilon"] <= 2.0 + 1e-6
    assert result.model.private
    assert result.model.epsilon == payload["epsilon"]


def test_a_run_past_the_budget_is_refused_before_training(pairs, key: SigningKey, tmp_path: Path) -> None:
    ledger = PrivacyLedger(tmp_path / "ledger.jsonl", key)
    train(pairs, ledger, epsilon=3.0, budget=5.0)
    spent = ledger.spent
    with pytest.raises(BudgetExceededError) as refused:
        train(pairs, ledger, epsilon=3.0, budget=5.0)
    message = str(refused.value)
    assert f"spent ε = {spent:.4g}" in message
    assert "requested ε = 3" in message
    assert "budget ε = 5" in message
    assert len(ledger.entries) == 1  # nothing trained, nothing recorded
    train(pairs, ledger, epsilon=1.5, budget=5.0)  # what fits still runs
    assert ledger.spent == pytest.approx(spent + ledger.entries[-1].payload["epsilon"])


def test_non_private_runs_are_recorded_and_marked(pairs, key: SigningKey, tmp_path: Path) -> None:
    ledger = PrivacyLedger(tmp_path / "ledger.jsonl", key)
    result = train(pairs, ledger, epsilon=math.inf)
    assert not result.model.private
    assert result.model.epsilon is None
    assert math.isinf(result.epsilon)
    assert ledger.entries[-1].kind == NON_PRIVATE_RUN
    assert ledger.entries[-1].payload["epsilon"] is None
    assert ledger.spent == 0.0


def test_a_tampered_ledger_is_never_appended_to(pairs, key: SigningKey, tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger = PrivacyLedger(path, key)
    train(pairs, ledger, epsilon=1.0)
    ledger.close()
    entry = json.loads(path.read_text())
    entry["payload"]["epsilon"] = 0.01  # pretend less was spent
    path.write_text(json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n")
    with pytest.raises(LogIntegrityError, match="signature"):
        PrivacyLedger(path, key)


def test_client_config_loads_the_kit_and_resolves_paths(tmp_path: Path) -> None:
    from secure_mor.crypto.provision import create_federation

    federation = create_federation(tmp_path / "kit", ["alice"])
    path = tmp_path / "kit" / "clients" / "alice" / "client.toml"
    config = load_client_config(path)
    assert config.name == "alice"
    assert config.shard == "alice"
    assert config.privacy.ledger == path.parent / "state" / "privacy_ledger.jsonl"
    assert config.federation.signing_key.is_file()
    assert federation.parties
    with pytest.raises(Exception, match="budget"):
        dataclasses.replace(config.privacy, budget=math.inf)


@pytest.mark.parametrize("arch", ["compact", "lora-vlm"])
def test_empty_poisson_batches_still_take_a_noisy_step(
    arch: str, pairs, key: SigningKey, tmp_path: Path
) -> None:
    """With 4 pairs and an expected batch of 1, many Poisson batches are empty: each still counts."""
    ledger = PrivacyLedger(tmp_path / "ledger.jsonl", key)
    config = dataclasses.replace(TINY, architecture=arch, lora_rank=2)  # type: ignore[arg-type]
    result = train_reward_model(
        pairs.select(range(4)),
        pairs.select(range(4, 6)),
        model_config=config,
        training=TrainingConfig(epochs=2, batch_size=1, physical_batch_size=1),
        privacy=PrivacyConfig(epsilon=8.0, delta=1e-3, budget=10.0),
        epsilon=8.0,
        ledger=ledger,
    )
    assert result.steps == 8  # every logical step, empty or not, was taken (and accounted)
    assert ledger.entries[-1].payload["steps"] == 8
