"""GRPO on the policy VLM with TRL's ``GRPOTrainer``: the (federated) reward is its reward function.

LoRA adapters through ``peft_config`` by default, so the KL reference is the base model with the
adapters disabled; KL β > 0 by default. The public prompts are a conversational dataset with an
``image`` column; every other column (question, answer, kind, image_id) reaches the reward function
as a keyword argument, as TRL passes dataset columns through.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import datasets
from peft import LoraConfig
from transformers import PrinterCallback
from trl.trainer.grpo_config import GRPOConfig
from trl.trainer.grpo_trainer import GRPOTrainer

from secure_mor.config import help_field, require
from secure_mor.errors import ConfigError
from secure_mor.models.prompts import vqa_messages

RewardFunc = Callable[..., Sequence[float | None]]
"""TRL's reward-function contract: ``f(prompts, completions, **columns) -> one float per completion``
(``None`` where the function has no reward: TRL then takes no step on that rollout)."""


@dataclass(frozen=True)
class GrpoSettings:
    """GRPO hyper-parameters (the ``[grpo]`` table of the server config)."""

    steps: int = help_field(150, "Optimizer steps.")
    prompts_per_step: int = help_field(8, "B: prompts per step (each gets `group_size` completions).")
    group_size: int = help_field(8, "G: completions sampled per prompt; advantages are normalised per group.")
    learning_rate: float = help_field(5e-4, "AdamW learning rate (of the LoRA adapters by default).")
    beta: float = help_field(0.04, "KL coefficient towards the frozen reference (> 0 keeps it close).")
    loss_type: Literal["grpo", "bnpo", "dr_grpo", "dapo"] = help_field("grpo", "TRL's GRPO loss variant.")
    lora_rank: int = help_field(8, "LoRA rank of the policy's adapters; 0 trains the full model.")
    lora_alpha: int = help_field(16, "LoRA scaling numerator.")
    lora_targets: tuple[str, ...] = help_field(
        ("q_proj", "k_proj", "v_proj", "o_proj"), "Text-attention projections that get adapters."
    )
    temperature: float = help_field(1.0, "Sampling temperature of the completions.")
    max_completion_length: int = help_field(8, "Longest sampled answer, in tokens.")
    save_steps: int = help_field(25, "Checkpoint every this many steps (adapters, optimizer, step counter).")
    seed: int = help_field(0, "Seed of sampling and prompt order.")
    balance_kinds: bool = help_field(
        False,
        "Draw the public prompts' question kinds (their 'kind' column) equally often; false keeps their "
        "natural mix (easy-VQA: three in four are yes/no).",
    )

    def __post_init__(self) -> None:
        for name in ("steps", "prompts_per_step", "max_completion_length", "save_steps"):
            require(getattr(self, name) >= 1, name, f"expected an integer ≥ 1, found {getattr(self, name)}")
        require(
            self.group_size >= 2,
            "group_size",
            f"GRPO needs ≥ 2 completions per prompt, found {self.group_size}",
        )
        require(self.beta >= 0, "beta", f"expected a number ≥ 0, found {self.beta}")
        require(self.learning_rate > 0, "learning_rate", f"expected a number > 0, found {self.learning_rate}")
        require(self.lora_rank >= 0, "lora_rank", f"expected an integer ≥ 0, found {self.lora_rank}")


def grpo_prompts(public: datasets.Dataset, *, balance_kinds: bool = False) -> datasets.Dataset:
    """The public VQA prompts in TRL's conversational format: a ``prompt`` column of chat messages.

    ``balance_kinds`` interleaves the kinds (the ``kind`` column of the server's own public prompts) in
    turn, so each is equally frequent, stopping when the rarest runs out: with easy-VQA's natural mix a
    kind that is one prompt in eight would get too few groups for GRPO to learn from within a short run.
    (TRL shuffles the prompts; the interleaving only sets how many of each kind there are.)
    """
    if balance_kinds:
        if "kind" not in public.column_names:
            raise ConfigError(
                "grpo.balance_kinds: the public prompts have no 'kind' column "
                f"(their columns: {', '.join(public.column_names)})"
            )
        kinds = public["kind"]  # the column alone: selecting by index decodes no image
        parts = [public.select([i for i, k in enumerate(kinds) if k == kind]) for kind in sorted(set(kinds))]
        public = datasets.interleave_datasets(parts, stopping_strategy="first_exhausted")
    return public.map(lambda row: {"prompt": vqa_messages(row["question"])})


def build_grpo_trainer(
    *,
    base_model: Path,
    processor: Any,
    prompts: datasets.Dataset,
    reward_funcs: Sequence[RewardFunc],
    settings: GrpoSettings,
    output_dir: Path,
    callbacks: Sequence[Any] = (),
    quiet: bool = False,
) -> GRPOTrainer:
    """A ``GRPOTrainer`` on the saved base model; with β > 0 TRL rebuilds the reference from that folder.

    ``quiet`` drops the trainer's printing of every step's metrics (for callers that show their own).
    """
    config = GRPOConfig(
        output_dir=str(output_dir),
        per_device_train_batch_size=settings.prompts_per_step * settings.group_size,
        num_generations=settings.group_size,
        max_completion_length=settings.max_completion_length,
        max_steps=settings.steps,
        learning_rate=settings.learning_rate,
        beta=settings.beta,
        loss_type=settings.loss_type,
        temperature=settings.temperature,
        seed=settings.seed,
        logging_steps=1,
        save_strategy="steps",
        save_steps=settings.save_steps,
        report_to=[],
        use_cpu=True,
        bf16=False,
        disable_tqdm=True,
        remove_unused_columns=False,
    )
    peft_config = (
        LoraConfig(
            r=settings.lora_rank,
            lora_alpha=settings.lora_alpha,
            target_modules=list(settings.lora_targets),
            task_type="CAUSAL_LM",
        )
        if settings.lora_rank
        else None
    )
    trainer = GRPOTrainer(
        model=str(base_model),
        reward_funcs=list(reward_funcs),  # type: ignore[arg-type]  # TRL allows None per item; ours never
        args=config,
        train_dataset=prompts,
        processing_class=processor,
        peft_config=peft_config,
        callbacks=list(callbacks),
    )
    if quiet:
        trainer.remove_callback(PrinterCallback)
    return trainer
