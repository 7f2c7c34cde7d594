"""Reward models of both architectures: scores in [0, 1], save/load round trip, calibration, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest

from secure_mor.cli import main
from secure_mor.client.reward_model import RewardModel, load_reward_model


@pytest.mark.parametrize("arch", ["compact", "lora"])
def test_scores_are_in_unit_interval_and_survive_save_and_load(
    arch: str, request: pytest.FixtureRequest, pairs: datasets.Dataset, tmp_path: Path
) -> None:
    model: RewardModel = request.getfixturevalue(arch).calibrated(pairs.select(range(8)))
    rows = pairs.select(range(5))
    scores = model.score(list(rows["image"]), list(rows["question"]), list(rows["chosen"]))
    assert scores.shape == (5,)
    assert np.all((scores >= 0) & (scores <= 1))
    assert np.all(np.isfinite(scores))
    loaded = load_reward_model(model.save(tmp_path / arch))
    assert loaded.architecture == model.architecture
    assert loaded.temperature == model.temperature
    again = loaded.score(list(rows["image"]), list(rows["question"]), list(rows["chosen"]))
    np.testing.assert_allclose(again, scores, atol=1e-6)


def test_calibration_fits_a_temperature_without_changing_the_ranking(compact: RewardModel, pairs) -> None:
    held = pairs.select(range(16))
    calibrated = compact.calibrated(held)
    assert calibrated.temperature > 0
    np.testing.assert_array_equal(calibrated.pair_rewards(held), compact.pair_rewards(held))


def test_train_rm_cli_trains_records_and_refuses_past_the_budget(tmp_path: Path, capsys) -> None:
    from secure_mor.crypto.provision import create_federation

    create_federation(tmp_path / "kit", ["color"])
    config = tmp_path / "kit" / "clients" / "color" / "client.toml"
    with config.open("a") as file:
        file.write(
            "\n[reward_model]\nlimit = 40\nhidden = 8\nvocab_buckets = 32\n"
            'public_epochs = 1\npublic_pairs_per_kind = 8\npublic_cache = "cache"\n'
            "[training]\nepochs = 1\nbatch_size = 8\n[privacy]\nepsilon = 2.0\nbudget = 3.0\ndelta = 1e-3\n"
        )
    assert main(["client", "train-rm", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "held-out pairwise accuracy" in out
    assert "ε spent" in out
    state = config.parent / "state"
    meta = json.loads((state / "reward_model" / "reward_model.json").read_text())
    assert meta["private"]
    assert meta["architecture"] == "compact"
    key = meta["settings"]["public_init"]  # started from the public pretraining, cached beside the config
    assert (config.parent / "cache" / key / "compact_public.pt").is_file()
    assert main(["client", "train-rm", "--config", str(config)]) == 1  # 2 + 2 > 3
    assert "privacy budget exceeded" in capsys.readouterr().err
    assert len((state / "privacy_ledger.jsonl").read_text().splitlines()) == 1
    assert main(["client", "train-rm", "--config", str(config), "--epsilon", "-1"]) == 2
