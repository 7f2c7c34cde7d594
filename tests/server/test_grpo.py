"""GRPO with TRL on the tiny VLM: rewards reach TRL and the LoRA policy moves."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch

from secure_mor.data import FederatedSplits
from secure_mor.errors import ConfigError
from secure_mor.models.factory import build_tiny_vlm, save_vlm
from secure_mor.models.presets import PRESETS
from secure_mor.server.grpo import build_grpo_trainer, grpo_prompts
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
