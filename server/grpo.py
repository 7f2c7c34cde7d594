"""GRPO on the policy VLM with TRL's ``GRPOTrainer``: the (federated) reward is its reward function.

LoRA adapters through ``peft_config`` by default, so the KL reference is the base model with the
adapters disabled; KL β > 0 by default. The public prompts are a conversational dataset with an
``image`` column; every other column (question, answer, kind, image_id) reaches the reward function
as a keyword argument, as TRL passes dataset columns through.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import datasets
from peft import LoraConfig
from transformers import PrinterCallback
from trl.trainer.grpo_config import GRPOConfig
from trl.trainer.grpo_trainer import GRPOTrainer

from secure_mor.errors import ConfigError
from secure_mor.models.prompts import vqa_messages
from secure_mor.server.settings import GrpoSettings

RewardFunc = Callable[..., Sequence[float | None]]
"""TRL's reward-function contract: ``f(prompts, completions, **columns) -> one float per completion``
(``None`` where the function has no reward: TRL then takes no step on that rollout)."""


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
        gradient_checkpointing=settings.gradient_checkpointing,
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
