"""Reward models of both architectures: scores in [0, 1], save/load round trip, calibration, the CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Literal

import datasets
import numpy as np
import pytest

from secure_mor.cli import main
from secure_mor.client.reward_model import TEMPERATURES, RewardModel, load_reward_model, platt_target


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


@pytest.mark.parametrize("arch", ["compact", "lora"])
def test_a_group_of_answers_to_one_image_scores_as_each_answer_alone(
    arch: str, request: pytest.FixtureRequest, pairs: datasets.Dataset
) -> None:
    model: RewardModel = request.getfixturevalue(arch)
    rows = pairs.select(range(3))
    # Three GRPO groups of unequal size (3, 2, 1 answers) sharing their image objects, interleaved.
    order = [0, 1, 0, 2, 1, 0]
    images = [rows[i]["image"] for i in range(3)]
    answers = [rows[i]["chosen"] if n % 2 else rows[i]["rejected"] for n, i in enumerate(order)]
    questions = [rows[i]["question"] for i in order]
    grouped = model.score([images[i] for i in order], questions, answers)
    alone = np.array(
        [
            model.score([images[i].copy()], [q], [a])[0]
            for i, q, a in zip(order, questions, answers, strict=True)
        ]
    )
    np.testing.assert_allclose(grouped, alone, atol=1e-5)
    assert len(set(np.round(grouped, 6))) > 1


@pytest.mark.parametrize("arch", ["compact", "lora"])
def test_with_candidates_a_score_is_the_choice_probability_among_the_answers_of_its_kind(
    arch: str, request: pytest.FixtureRequest, pairs: datasets.Dataset, tmp_path: Path
) -> None:
    plain: RewardModel = request.getfixturevalue(arch).calibrated(pairs.select(range(8)))
    colours = tuple(sorted(set(pairs["chosen"]) | set(pairs["rejected"])))
    model = replace(plain, candidates={"color": colours, "shape": ("circle", "triangle")})
    image, question = pairs[0]["image"], pairs[0]["question"]

    def choice(pool: list[str]) -> np.ndarray:
        logits = plain.rewards([image], [question], [pool])[0] / plain.temperature
        weights: np.ndarray = np.exp(logits - logits.max())
        normalised: np.ndarray = weights / weights.sum()
        return normalised

    # One group: each colour as a policy would write it, and an answer of no kind: compared with the
    # colours only (no shape is in the group), the odd answer among them.
    answers = [f"{c.capitalize()}." for c in colours] + ["a dog"]
    scores = model.score([image] * len(answers), [question] * len(answers), answers)
    np.testing.assert_allclose(scores, choice([*colours, "a dog"]), atol=1e-5)
    assert scores.sum() == pytest.approx(1.0, abs=1e-5)
    # A group with a colour and a shape is compared with both kinds' answers.
    mixed = model.score([image] * 2, [question] * 2, [colours[0], "triangle"])
    both = choice([*colours, "circle", "triangle"])
    np.testing.assert_allclose(mixed, both[[0, len(colours) + 1]], atol=1e-5)
    # A group of answers of no known kind keeps the absolute score.
    odd = model.score([image] * 2, [question] * 2, ["a dog", "two cats"])
    np.testing.assert_allclose(odd, plain.score([image] * 2, [question] * 2, ["a dog", "two cats"]))
    loaded = load_reward_model(model.save(tmp_path / arch))
    assert loaded.candidates == model.candidates
    again = loaded.score([image] * len(answers), [question] * len(answers), answers)
    np.testing.assert_allclose(again, scores, atol=1e-5)


def test_calibration_fits_a_temperature_without_changing_the_ranking(compact: RewardModel, pairs) -> None:
    held = pairs.select(range(16))
    calibrated = compact.calibrated(held)
    assert calibrated.temperature > 0
    np.testing.assert_array_equal(calibrated.pair_rewards(held), compact.pair_rewards(held))


def test_calibration_keeps_scores_graded_when_the_held_out_pairs_are_all_ranked_right(
    compact: RewardModel, pairs: datasets.Dataset
) -> None:
    raw = compact.pair_rewards(pairs)
    held = pairs.select(np.flatnonzero(raw[:, 0] > raw[:, 1]).tolist())
    diff = compact.pair_rewards(held) @ np.array([1.0, -1.0])
    assert len(held) >= 4
    assert np.all(diff > 0)
    # Fitting the temperature to a target of 1 on such pairs runs to the grid's floor (scores of 0 or 1)...
    assert int(np.argmin([np.logaddexp(0.0, -diff / t).mean() for t in TEMPERATURES])) == 0
    # ...Platt's target keeps the temperature off the floor and the scores inside (0, 1), in order.
    calibrated = compact.calibrated(held)
    assert calibrated.temperature > 2 * TEMPERATURES[0]
    win = 1.0 / (1.0 + np.exp(-diff / calibrated.temperature))
    assert win.max() < 1.0  # held-out wins are not certainties
    assert win.mean() < platt_target(len(held)) + 0.03
    scores = calibrated.score(list(held["image"]), list(held["question"]), list(held["chosen"]))
    assert np.all((scores > 1e-6) & (scores < 1 - 1e-6))
    assert len(np.unique(scores)) == len(scores)


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
    # It scores an answer against every public answer (the choice score), not the private shard's.
    assert meta["candidates"]["shape"] == ["circle", "rectangle", "triangle"]
    assert {"blue", "red"} <= set(meta["candidates"]["color"])
    assert main(["client", "train-rm", "--config", str(config)]) == 1  # 2 + 2 > 3
    assert "privacy budget exceeded" in capsys.readouterr().err
    assert len((state / "privacy_ledger.jsonl").read_text().splitlines()) == 1
    assert main(["client", "train-rm", "--config", str(config), "--epsilon", "-1"]) == 2


@pytest.mark.parametrize(("architecture", "share"), [("lora-vlm", 0.25), ("compact", 0.0)])
def test_a_share_of_private_pairs_contrasts_an_answer_of_another_kind(
    architecture: Literal["compact", "lora-vlm"], share: float, easy_splits
) -> None:
    from secure_mor.client.config import ClientConfig, RewardModelConfig
    from secure_mor.client.run import client_pairs
    from secure_mor.crypto.kit import FederationConfig
    from secure_mor.data import answers_by_kind

    def kit(model: RewardModelConfig) -> ClientConfig:
        return ClientConfig(federation=FederationConfig(identity="client:yesno"), reward_model=model)

    plain = kit(RewardModelConfig(shard="yesno", off_kind_share=0.0, limit=400))
    config = kit(RewardModelConfig(architecture=architecture, shard="yesno", limit=400))
    before, after = client_pairs(plain, easy_splits), client_pairs(config, easy_splits)
    own = set(answers_by_kind(easy_splits.public)["yesno"])
    off = [r not in own for r in after.train["rejected"]]
    assert len(after.train) == len(before.train)  # replaced in place: each private pair counts once
    assert sum(off) == round(share * len(after.train))
    assert after.train["chosen"] == before.train["chosen"]
    assert [r for r, o in zip(after.train["rejected"], off, strict=True) if not o] == [
        r for r, o in zip(before.train["rejected"], off, strict=True) if not o
    ]
    assert all(r in own for r in after.heldout["rejected"])  # held out: the client's own kind only
