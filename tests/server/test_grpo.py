"""GRPO with TRL on the tiny VLM: rewards reach TRL, the LoRA policy moves, and the server's trainer
(each prompt's image encoded once) computes what stock TRL computes."""

from __future__ import annotations

import inspect
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from trl.trainer.grpo_trainer import GRPOTrainer

from secure_mor.data import FederatedSplits
from secure_mor.errors import ConfigError
from secure_mor.models.factory import build_tiny_vlm, save_vlm
from secure_mor.models.presets import PRESETS
from secure_mor.server.grpo import ImageOnceGRPOTrainer, build_grpo_trainer, grpo_prompts
from secure_mor.server.rewards import GoldReward, completion_text
from secure_mor.server.settings import GrpoSettings


def test_grpo_rewards_reach_trl_and_the_lora_policy_moves(
    tmp_path: Path, easy_splits: FederatedSplits
) -> None:
    foundation = easy_splits.foundation
    vlm = build_tiny_vlm(PRESETS["tiny"], [*foundation["question"], *foundation["answer"]], seed=0)
    base = save_vlm(vlm, tmp_path / "base")
    calls: list[int] = []

    def shorter_is_better(prompts: list[Any], completions: list[Any], **columns: Any) -> list[float]:
        # An untrained model's answers are all wrong (gold = 0 everywhere, no advantage); their lengths vary.
        calls.append(len(completions))
        assert len(columns["answer"]) == len(completions)  # dataset columns reach the reward function
        return [1.0 / (1 + len(completion_text(c))) for c in completions]

    settings = GrpoSettings(
        steps=3, prompts_per_step=2, group_size=4, learning_rate=5e-2, save_steps=100, lora_rank=8
    )
    trainer = build_grpo_trainer(
        base_model=base,
        processor=vlm.processor,
        prompts=grpo_prompts(easy_splits.prompts.select(range(16))),
        reward_funcs=[shorter_is_better],
        settings=settings,
        output_dir=tmp_path / "grpo",
    )
    model = trainer.model
    assert model is not None
    assert not trainer.args.gradient_checkpointing  # TRL's default is on; here it only costs time
    before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}
    assert before, "LoRA adapters should be attached"
    trainer.train()
    assert calls == [8, 8, 8]  # B·G rollouts scored per step
    moved = [n for n, p in model.named_parameters() if "lora_B" in n and not torch.equal(p, before[n])]
    assert moved, "the policy's LoRA weights should change"
    logged = [h for h in trainer.state.log_history if "reward" in h]
    assert len(logged) == 3
    assert all("kl" in h for h in logged)


def shorter_is_better(prompts: list[Any], completions: list[Any], **columns: Any) -> list[float]:
    """A reward that varies within a group for an untrained model (gold is 0 everywhere: no advantage)."""
    return [1.0 / (1 + len(completion_text(c))) for c in completions]


def _count_vision_rows(models: list[Any]) -> list[int]:
    """Patch rows of every call of these models' vision towers, recorded from now on."""
    rows: list[int] = []
    for model in models:
        model.model.visual.register_forward_hook(lambda _module, args, _out: rows.append(args[0].shape[0]))
    return rows


def test_the_server_trainer_computes_what_stock_trl_computes_with_each_image_encoded_once(
    tmp_path: Path, easy_splits: FederatedSplits
) -> None:
    foundation = easy_splits.foundation
    vlm = build_tiny_vlm(PRESETS["tiny"], [*foundation["question"], *foundation["answer"]], seed=0)
    base = save_vlm(vlm, tmp_path / "base")
    settings = GrpoSettings(steps=1, prompts_per_step=2, group_size=4, learning_rate=1e-3, save_steps=100)
    b, g = settings.prompts_per_step, settings.group_size
    assert inspect.signature(build_grpo_trainer).parameters["trainer_class"].default is ImageOnceGRPOTrainer
    trainers = {
        cls: build_grpo_trainer(
            base_model=base,
            processor=vlm.processor,
            prompts=grpo_prompts(easy_splits.prompts.select(range(16))),
            reward_funcs=[shorter_is_better],
            settings=settings,
            output_dir=tmp_path / cls.__name__,
            quiet=True,
            trainer_class=cls,
        )
        for cls in (GRPOTrainer, ImageOnceGRPOTrainer)
    }

    # One generation batch from the same seed: the same completions, rewards, advantages, image inputs and
    # reference log-probs; generation and the reference pass encode each image once instead of G times.
    batches, rows = {}, {}
    for cls, trainer in trainers.items():
        assert trainer.model is not None
        trainer.model.train()
        rows[cls] = _count_vision_rows([trainer.model, trainer.ref_model])
        torch.manual_seed(0)
        inputs = next(iter(trainer.get_train_dataloader()))
        batches[cls] = trainer._generate_and_score_completions(inputs)
    distinct_images = len({row["image_id"] for row in inputs})  # two questions may share an image
    stock, ours = batches[GRPOTrainer], batches[ImageOnceGRPOTrainer]
    assert stock.keys() == ours.keys()
    for key, value in stock.items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(ours[key], value, rtol=0, atol=1e-5, msg=key)
        else:
            assert ours[key] == value, key
    patches = int(stock["image_grid_thw"][0].prod())
    assert rows[GRPOTrainer] == [b * g * patches, b * g * patches]  # generation, reference
    assert rows[ImageOnceGRPOTrainer] == [b * patches, distinct_images * patches]

    # The policy's per-token log-probs and entropies on that batch, against TRL's own method.
    trainer = trainers[ImageOnceGRPOTrainer]
    sequences = torch.cat([ours["prompt_ids"], ours["completion_ids"]], 1)
    mask = torch.cat([ours["prompt_mask"], ours["completion_mask"]], 1)
    images = {k: ours[k] for k in ("pixel_values", "image_grid_thw", "num_images", "mm_token_type_ids")}
    args = (trainer.model, sequences, mask, ours["completion_ids"].size(1))
    mine = trainer._get_per_token_logps_and_entropies(*args, compute_entropy=True, **images)
    theirs = GRPOTrainer._get_per_token_logps_and_entropies(trainer, *args, compute_entropy=True, **images)
    torch.testing.assert_close(mine[0], theirs[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(mine[1], theirs[1], rtol=0, atol=1e-5)

    # One training step each from the same seed: the same completions and update, up to float rounding.
    assert trainer.model is not None
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    for each in trainers.values():
        torch.manual_seed(0)
        each.train()
    stock_model, our_model = (t.model for t in trainers.values())
    assert stock_model is not None
    assert our_model is not None
    assert trainers[GRPOTrainer]._logs["completion"] == trainers[ImageOnceGRPOTrainer]._logs["completion"]
    after = dict(our_model.named_parameters())
    assert max((after[n] - before[n]).abs().max().item() for n in before) > 1e-4  # the step moved weights
    for name, value in stock_model.named_parameters():
        torch.testing.assert_close(after[name], value, rtol=0, atol=1e-5, msg=name)


def test_gold_reward_is_exact_match_after_normalisation() -> None:
    completions = [
        [{"role": "assistant", "content": " Circle."}],
        [{"role": "assistant", "content": "red"}],
        "no",
    ]
    assert GoldReward()([], completions, answer=["circle", "blue", "no"]) == [1.0, 0.0, 1.0]


def test_balanced_prompts_draw_every_kind_equally_often(easy_splits: FederatedSplits) -> None:
    public = easy_splits.prompts.select(range(400))
    natural = Counter(public["kind"])
    assert natural["yesno"] > 2 * natural["color"]  # easy-VQA's natural mix is mostly yes/no
    balanced = grpo_prompts(public, balance_kinds=True)
    counts = Counter(balanced["kind"])
    assert set(counts) == set(natural)
    assert max(counts.values()) - min(counts.values()) <= 1  # interleaved until the rarest kind runs out
    assert len(balanced) >= len(natural) * min(natural.values()) - 2
    prompts, questions = balanced["prompt"], balanced["question"]
    assert all(p[0]["content"][-1]["text"] == q for p, q in zip(prompts, questions, strict=True))


def test_balancing_prompts_without_a_kind_column_is_refused(easy_splits: FederatedSplits) -> None:
    public = easy_splits.prompts.select(range(8)).remove_columns("kind")
    with pytest.raises(ConfigError, match=r"grpo\.balance_kinds: the public prompts have no 'kind' column"):
        grpo_prompts(public, balance_kinds=True)
