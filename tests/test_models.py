"""The tiny Qwen2-VL: offline build, save/reload, batches equal to the processor's, pretraining, eval."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans

from secure_mor.data import DataConfig, FederatedSplits
from secure_mor.errors import ConfigError, ModelError
from secure_mor.models.evaluate import TextOnlyBaseline, balanced_rows, evaluate_vlm, sample_rows
from secure_mor.models.factory import Vlm, build_tiny_vlm, load_vlm, save_vlm
from secure_mor.models.features import prompt_features
from secure_mor.models.presets import PRESETS, VlmPreset
from secure_mor.models.pretrain import MANIFEST, BaseConfig, BasePretrainer, PretrainConfig
from secure_mor.models.processor import ImageOnlyQwen2VLProcessor
from secure_mor.models.prompts import vqa_prompt
from secure_mor.models.sft import IGNORE, SftBatcher


@pytest.fixture(scope="module")
def tiny(easy_splits: FederatedSplits) -> Vlm:
    foundation = easy_splits.foundation
    return build_tiny_vlm(PRESETS["tiny"], [*foundation["question"], *foundation["answer"]], seed=0)


def test_tiny_vlm_builds_offline_with_an_image_only_processor(tiny: Vlm) -> None:
    assert isinstance(tiny.processor, ImageOnlyQwen2VLProcessor)
    assert not hasattr(tiny.processor, "video_processor") or tiny.processor.video_processor is None
    assert 300_000 < tiny.num_parameters < 1_200_000
    tokenizer = tiny.processor.tokenizer
    assert tokenizer.tokenize("what color is the shape?") == ["what", "Ġcolor", "Ġis", "Ġthe", "Ġshape", "?"]


def test_save_and_reload_give_identical_logits(
    tiny: Vlm, easy_splits: FederatedSplits, tmp_path: Path
) -> None:
    rows = easy_splits.test.select(range(4))
    prompts = [vqa_prompt(tiny.processor, q) for q in rows["question"]]
    inputs = tiny.processor(images=list(rows["image"]), text=prompts, return_tensors="pt", padding=True)
    tiny.model.eval()
    with torch.no_grad():
        before = tiny.model(**inputs).logits
    save_vlm(tiny, tmp_path / "model")
    loaded = load_vlm(tmp_path / "model")
    assert isinstance(loaded.processor, ImageOnlyQwen2VLProcessor)
    again = loaded.processor(images=list(rows["image"]), text=prompts, return_tensors="pt", padding=True)
    assert torch.equal(again["input_ids"], inputs["input_ids"])
    assert torch.equal(again["pixel_values"], inputs["pixel_values"])
    with torch.no_grad():
        after = loaded.model(**again).logits
    assert torch.equal(before, after)


def test_sft_batches_equal_the_processor_output(tiny: Vlm, easy_splits: FederatedSplits) -> None:
    rows = easy_splits.foundation.select(range(6))
    batch = SftBatcher(tiny.processor, rows).batch([0, 3, 5])
    texts = [
        vqa_prompt(tiny.processor, rows[i]["question"]) + rows[i]["answer"] + "<|im_end|>" for i in (0, 3, 5)
    ]
    images = [rows[i]["image"] for i in (0, 3, 5)]
    reference = tiny.processor(
        images=images, text=texts, return_tensors="pt", padding=True, padding_side="right"
    )
    for key in ("input_ids", "attention_mask", "mm_token_type_ids", "pixel_values", "image_grid_thw"):
        assert torch.equal(batch[key], reference[key]), key
    # Labels cover exactly the answer and the end-of-turn token.
    tokenizer = tiny.processor.tokenizer
    for b, i in enumerate((0, 3, 5)):
        labelled = batch["labels"][b][batch["labels"][b] != IGNORE]
        assert tokenizer.decode(labelled) == rows[i]["answer"] + "<|im_end|>"


def test_preset_rejects_a_wrong_mrope_section() -> None:
    with pytest.raises(ConfigError, match="must sum to head_dim/2 = 16"):
        VlmPreset(**{**PRESETS["tiny"].__dict__, "mrope_section": (8, 8, 8)})


def test_load_vlm_gives_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model not found"):
        load_vlm(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="not a model folder"):
        load_vlm(tmp_path / "empty")


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[float], int]:
    """A 40-step base: its folder, its losses and the steps it reports."""
    folder = tmp_path_factory.mktemp("pretrained") / "base"
    config = BaseConfig(data=DataConfig(), pretrain=PretrainConfig(steps=40, batch_size=32, warmup_steps=5))
    losses: list[float] = []
    result = BasePretrainer(config).run(folder, progress=lambda s, n, loss: losses.append(loss))
    return folder, losses, result.steps


def test_pretraining_lowers_the_loss_and_saves_a_loadable_model(
    pretrained: tuple[Path, list[float], int], easy_splits: FederatedSplits
) -> None:
    folder, losses, steps = pretrained
    assert steps == 40
    assert len(losses) == 40
    assert losses[-1] < 0.6 * losses[0], (
        f"loss should fall during pretraining: {losses[0]:.2f} → {losses[-1]:.2f}"
    )
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["config"]["pretrain"]["steps"] == 40
    vlm = load_vlm(folder)
    test = easy_splits.test.select(sample_rows(len(easy_splits.test), 48, seed=0))
    result_eval = evaluate_vlm(vlm, test, TextOnlyBaseline(easy_splits.foundation), batch_size=16)
    assert result_eval.scores["overall"].questions == 48
    assert sum(s.questions for k, s in result_eval.scores.items() if k != "overall") == 48


def test_prompt_features_separate_question_kinds(
    pretrained: tuple[Path, list[float], int], easy_splits: FederatedSplits
) -> None:
    """The router's φ (last-token state of the reference) puts prompts of one kind in their own clusters."""
    vlm = load_vlm(pretrained[0])
    test = easy_splits.test.select(balanced_rows(easy_splits.test["kind"], 90, seed=0))
    phi = prompt_features(vlm, test["image"], test["question"], batch_size=32)
    assert phi.shape == (90, vlm.model.config.text_config.hidden_size)
    standardised = (phi - phi.mean(axis=0)) / (phi.std(axis=0) + 1e-6)
    labels = KMeans(n_clusters=3, n_init=10, random_state=0).fit(standardised).labels_
    kinds = np.array(test["kind"])
    majority = sum(Counter(kinds[labels == c]).most_common(1)[0][1] for c in set(labels.tolist()))
    assert majority / len(kinds) >= 0.9, f"cluster purity {majority / len(kinds):.2f}"


def test_text_only_baseline_scores_high_on_yes_no_and_low_on_colour(easy_splits: FederatedSplits) -> None:
    baseline = TextOnlyBaseline(easy_splits.foundation)
    test = easy_splits.test
    hits: dict[str, list[bool]] = {}
    for question, answer, kind in zip(test["question"], test["answer"], test["kind"], strict=True):
        hits.setdefault(kind, []).append(baseline.answer(question) == answer)
    accuracy = {kind: sum(h) / len(h) for kind, h in hits.items()}
    assert accuracy["yesno"] > 0.75  # the wording of a yes/no question gives its answer away (~84 %)
    assert accuracy["color"] < 0.25


def test_balanced_rows_take_each_kind_equally_and_all_of_a_rare_one() -> None:
    kinds = ["yesno"] * 90 + ["color"] * 30 + ["shape"] * 4
    rows = balanced_rows(kinds, 31, seed=0)
    assert rows == sorted(set(rows))
    taken = [kinds[i] for i in rows]
    # 31 over three kinds: 11 for the first in sorted order (color), 10 each after; shape has only 4.
    assert (taken.count("color"), taken.count("shape"), taken.count("yesno")) == (11, 4, 10)
    assert balanced_rows(kinds, 31, seed=0) == rows
    assert balanced_rows(kinds, 31, seed=1) != rows
