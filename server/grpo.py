"""GRPO on the policy VLM with TRL's ``GRPOTrainer``: the (federated) reward is its reward function.

LoRA adapters through ``peft_config`` when ``grpo.lora_rank`` > 0 (the KL reference is then the base
model with the adapters disabled); KL β > 0 by default. The public prompts are a conversational dataset
with an ``image`` column; every other column (question, answer, kind, image_id) reaches the reward
function as a keyword argument, as TRL passes dataset columns through. ``ImageOnceGRPOTrainer`` is TRL's
trainer with each prompt's image processed and encoded once for its G rollouts instead of G times.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import datasets
import torch
from peft import LoraConfig
from transformers import PrinterCallback
from transformers.modeling_outputs import BaseModelOutputWithPooling
from trl.trainer.grpo_config import GRPOConfig
from trl.trainer.grpo_trainer import GRPOTrainer
from trl.trainer.utils import selective_log_softmax, selective_log_softmax_and_entropy

from secure_mor.errors import ConfigError
from secure_mor.models.prompts import vqa_messages
from secure_mor.server.settings import GrpoSettings

RewardFunc = Callable[..., Sequence[float | None]]
"""TRL's reward-function contract: ``f(prompts, completions, **columns) -> one float per completion``
(``None`` where the function has no reward: TRL then takes no step on that rollout)."""


class ImageOnceGRPOTrainer(GRPOTrainer):
    """TRL's ``GRPOTrainer`` that processes and encodes each prompt's image once for its G rollouts.

    Stock TRL gives each of the B·G rollouts its own copy of its prompt's image: the processor runs on
    every copy twice a step and the vision tower in generation, in the reference's and in the policy's
    log-prob passes (and the policy's backward). Here each run of G equal prompts (as TRL's sampler
    gives them) is tokenised and processed once, its G answers are sampled with ``num_return_sequences``
    (transformers encodes the image before expanding), and the log-prob passes encode each distinct
    image once and hand the model its features through ``mm_encoder_outputs``. The log-prob passes also
    score only the completion positions: TRL's fused LM head scores every position where Triton is
    missing (CPU). The model sees the same inputs, so completions, log-probs and the update are the stock
    ones up to float rounding (``tests/server/test_grpo.py``); rewards, the loss, logging and checkpoints
    are TRL's own code. Other paths (vLLM, tools, images without ``image_grid_thw``) run TRL's code.
    """

    _rollouts_per_prompt = 1  # set by _tokenize_prompts for the _generate_single_turn call that follows

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        """TRL's, with a processor that processes each run of G equal prompts once (TRL's second pass)."""
        processor = self.processing_class
        self.processing_class = _ProcessedOncePerRun(processor, self._group_size())  # type: ignore[assignment]
        try:
            return super()._generate_and_score_completions(inputs)
        finally:
            self.processing_class = processor

    def _tokenize_prompts(self, prompts: list[Any]) -> tuple[Any, Any, dict[str, Any]]:
        """Tokenise and process each run of G equal prompts once; prompt ids and images per rollout."""
        group = self._group_size()
        if group == 1 or not _in_runs(prompts, group):
            return super()._tokenize_prompts(prompts)  # type: ignore[no-any-return]
        prompt_ids, images, fields = super()._tokenize_prompts(prompts[::group])
        self._rollouts_per_prompt = group
        return _repeat(prompt_ids, group), None if images is None else _repeat(images, group), fields

    def _generate_single_turn(
        self,
        prompt_ids: Any,
        images: Any,
        multimodal_fields: dict[str, Any],
        num_generations: int,
        has_tool_images: bool = False,
    ) -> tuple[Any, Any]:
        """Sample the G answers of each prompt tokenised once, with ``num_return_sequences`` = G."""
        group, self._rollouts_per_prompt = self._rollouts_per_prompt, 1
        if group == 1:
            return super()._generate_single_turn(  # type: ignore[no-untyped-call, no-any-return]
                prompt_ids, images, multimodal_fields, num_generations, has_tool_images
            )
        stock = self.generation_config
        self.generation_config = copy.deepcopy(stock)
        self.generation_config.num_return_sequences = group
        try:
            return super()._generate_single_turn(  # type: ignore[no-untyped-call, no-any-return]
                prompt_ids[::group],
                None if images is None else images[::group],
                multimodal_fields,
                num_generations,
                has_tool_images,
            )
        finally:
            self.generation_config = stock

    def _group_size(self) -> int:
        """G on TRL's plain transformers generation path; 1 (nothing shared) on any other."""
        assert self.model is not None
        group = self.num_generations if self.model.training else self.num_generations_eval
        other_path = (
            self.use_vllm
            or self.use_transformers_continuous_batching
            or self.tools
            or self.environment_factories
        )
        return 1 if other_path or not group else int(group)

    def _get_per_token_logps_and_entropies(
        self,
        model: Any,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        logits_to_keep: int,
        batch_size: int | None = None,
        compute_entropy: bool = False,
        compute_aux_loss: bool = False,
        pixel_values: torch.Tensor | None = None,
        image_grid_thw: torch.Tensor | None = None,
        num_images: list[int] | None = None,
        mm_token_type_ids: torch.Tensor | None = None,
        **others: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """TRL's per-token log-probs (and entropies) of the completions, computed more cheaply.

        Each distinct image of a chunk goes through the vision tower once, and only the completion
        positions through the LM head.
        """
        if (
            pixel_values is None
            or image_grid_thw is None
            or num_images is None
            or compute_aux_loss
            or getattr(self.args, "cast_lm_head_to_fp32", False)
            or any(value is not None for value in others.values())
        ):
            return super()._get_per_token_logps_and_entropies(  # type: ignore[no-any-return]
                model,
                input_ids,
                attention_mask,
                logits_to_keep,
                batch_size=batch_size,
                compute_entropy=compute_entropy,
                compute_aux_loss=compute_aux_loss,
                pixel_values=pixel_values,
                image_grid_thw=image_grid_thw,
                num_images=num_images,
                mm_token_type_ids=mm_token_type_ids,
                **others,
            )
        batch_size = batch_size or input_ids.size(0)
        pixels = torch.split(pixel_values, image_grid_thw.prod(-1).tolist())
        first_image = [0, *itertools.accumulate(num_images)]
        encoder = self.accelerator.unwrap_model(model)
        logps, entropies = [], []
        for start in range(0, input_ids.size(0), batch_size):
            end = min(start + batch_size, input_ids.size(0))
            ids, mask = input_ids[start:end], attention_mask[start:end]
            inputs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "use_cache": False}
            if mm_token_type_ids is not None:
                inputs["mm_token_type_ids"] = mm_token_type_ids[start:end]
            images = slice(first_image[start], first_image[end])
            with self.accelerator.autocast():
                if images.stop > images.start:
                    inputs["image_grid_thw"] = image_grid_thw[images]
                    features = _encode_once(encoder, pixels[images], image_grid_thw[images])
                    inputs["mm_encoder_outputs"] = {"image": features}
                logits = model(**inputs, logits_to_keep=logits_to_keep + 1).logits[:, :-1]
            completion, scored = ids[:, -logits_to_keep:], mask[:, -logits_to_keep:]
            if compute_entropy:
                logp, entropy = selective_log_softmax_and_entropy(
                    logits, completion, temperature=self.temperature, row_mask=scored
                )
                entropies.append(entropy)
            else:
                logp = selective_log_softmax(
                    logits, completion, temperature=self.temperature, row_mask=scored
                )
            logps.append(logp)
        return torch.cat(logps), torch.cat(entropies) if compute_entropy else None, None


class _ProcessedOncePerRun:
    """The trainer's processor, except that it processes each run of ``group`` equal prompts once.

    A call on prompts (text and images) in such runs processes one of each run and repeats its rows per
    rollout; any other call, and every other attribute, is the processor's own.
    """

    _PER_PROMPT = frozenset({"input_ids", "attention_mask", "mm_token_type_ids"})

    def __init__(self, processor: Any, group: int) -> None:
        self._processor, self._group = processor, group

    def __getattr__(self, name: str) -> Any:
        return getattr(self._processor, name)

    def __call__(self, *, images: list[Any] | None = None, text: list[str], **kwargs: Any) -> Any:
        """The processor's output for ``images`` and ``text``, each distinct run processed once."""
        g = self._group
        runs = g > 1 and images is not None and _in_runs(text, g) and _in_runs(images, g)
        if not runs or kwargs.get("return_tensors") != "pt":
            return self._processor(images=images, text=text, **kwargs)
        assert images is not None
        once = self._processor(images=images[::g], text=text[::g], **kwargs)
        known = set(once) <= self._PER_PROMPT | {"pixel_values", "image_grid_thw"}
        if not known or ("pixel_values" in once) != ("image_grid_thw" in once):
            return self._processor(images=images, text=text, **kwargs)  # fields we cannot repeat safely
        counts = [len(found or []) for found in images[::g]]
        first = [0, *itertools.accumulate(counts)]
        image_index = [j for p in range(len(counts)) for _ in range(g) for j in range(first[p], first[p + 1])]
        repeated = {
            key: value.repeat_interleave(g, 0) for key, value in once.items() if key in self._PER_PROMPT
        }
        if "image_grid_thw" in once:
            rows = torch.split(
                torch.arange(len(once["pixel_values"])), once["image_grid_thw"].prod(-1).tolist()
            )
            repeated["image_grid_thw"] = once["image_grid_thw"][image_index]
            repeated["pixel_values"] = once["pixel_values"][torch.cat([rows[j] for j in image_index])]
        return type(once)(repeated)


def _in_runs(items: Sequence[Any], group: int) -> bool:
    """Whether ``items`` are runs of ``group`` equal items: [a, a, b, b] for 2."""
    return len(items) % group == 0 and all(item == items[i - i % group] for i, item in enumerate(items))


def _repeat(items: Sequence[Any], times: int) -> list[Any]:
    """Each item ``times`` times in a row: [a, b] → [a, a, b, b] for 2."""
    return [item for item in items for _ in range(times)]


def _encode_once(
    encoder: Any, pixels: Sequence[torch.Tensor], grids: torch.Tensor
) -> BaseModelOutputWithPooling:
    """The vision features of each image, each distinct one (patches and grid) encoded once.

    ``pixels[i]`` and ``grids[i]`` are image i's patches and grid; the result is
    ``get_image_features``'s per-image output, as ``mm_encoder_outputs`` takes it.
    """
    distinct: list[int] = []  # index of each distinct image's first occurrence
    which: list[int] = []  # for each image, its position in ``distinct``
    sums = torch.stack([patches.sum() for patches in pixels]).tolist()  # equal images have equal sums
    for i, patches in enumerate(pixels):
        same = (
            n
            for n, j in enumerate(distinct)
            if sums[i] == sums[j] and torch.equal(grids[i], grids[j]) and torch.equal(patches, pixels[j])
        )
        match = next(same, len(distinct))
        if match == len(distinct):
            distinct.append(i)
        which.append(match)
    encoded = encoder.get_image_features(
        torch.cat([pixels[j] for j in distinct]), grids[distinct], return_dict=True
    )
    per_image = tuple(encoded.pooler_output[n] for n in which)
    return BaseModelOutputWithPooling(pooler_output=per_image)  # type: ignore[arg-type]  # one per image


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
    trainer_class: type[GRPOTrainer] = ImageOnceGRPOTrainer,
) -> GRPOTrainer:
    """A GRPO trainer on the saved base model; with β > 0 TRL rebuilds the reference from that folder.

    ``quiet`` drops the trainer's printing of every step's metrics (for callers that show their own);
    ``trainer_class`` is ``GRPOTrainer`` itself where stock TRL is wanted (tests, the throughput benchmark).
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
    trainer = trainer_class(
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
