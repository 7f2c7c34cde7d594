"""GRPO throughput of the server's TRL path against a minimal GRPO loop, and where a step's time goes.

Runs, in one process and alternated (``--rounds`` times each, fastest run kept), on the same tiny base,
batch (B prompts × G completions, kind-balanced easy-VQA prompts), sampling and reward (the gold exact
match, so no client is involved):

* TRL 1.16's stock ``GRPOTrainer``, configured as ``server/grpo.py``'s ``build_grpo_trainer`` does;
* ``ImageOnceGRPOTrainer``, the subclass ``build_grpo_trainer`` uses (each prompt's image processed
  and encoded once for its G rollouts);
* ``MinimalGrpo``, a hand-written loop with the same loss (group-normalised advantages, per-token
  log-probs, k3 KL with β to a frozen reference copy, AdamW, one optimizer step per generation batch,
  gradient clipping at 1, a linear learning-rate decay): it encodes each prompt's image once and
  samples the G answers with ``num_return_sequences``;
* with ``--checkpointing``, also the subclass with gradient checkpointing on (TRL's default).

It prints rollouts per second (median step time over the steps after the first two), the median
time per step in generation (prompt processing, sampling, decoding), the policy's log-prob forward,
the reference's, the backward pass and the rest, and each TRL path's ratio to the minimal loop.

    .venv/bin/python benchmarks/grpo_throughput.py [--steps 20] [--rounds 2] [--checkpointing]
        [--threads N] [--json out.json]

Measured (2-core CPU, contended: another engineer's jobs shared it during the session, load ~1 during
the run; defaults, with ``--checkpointing``): stock ``GRPOTrainer`` 227 rollouts/s (282-ms step:
generation 75, policy forward 52, reference forward 47, backward 66, other 42 ms), the subclass 435
(147: 36, 30, 28, 29, 25), the minimal loop 533 (120: 32, 27, 25, 31, 5): TRL reaches 0.43× stock and
0.82× with the subclass (0.44× and 0.80× with ``--threads 1``); the subclass with checkpointing on 388
(backward 45 ms). The rest of the gap is TRL's per-rollout Python work (its sampler fetches and decodes
each prompt's row G times, it deep-copies the B·G prompts with their images and renders each one's
chat template, it logs every step). With two threads on CPUs that other jobs use, everything slows
down ten-fold or more: ``--threads 1`` there. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import TrainerCallback
from transformers.modeling_outputs import BaseModelOutputWithPooling
from trl.trainer.grpo_trainer import GRPOTrainer

from secure_mor.models.factory import load_vlm
from secure_mor.models.prompts import vqa_prompt
from secure_mor.server.grpo import ImageOnceGRPOTrainer, build_grpo_trainer, grpo_prompts
from secure_mor.server.rewards import GoldReward
from secure_mor.server.settings import GrpoSettings
from secure_mor.simulate.preflight import check_recipe_data
from secure_mor.simulate.runner import recipe_base
from secure_mor.simulate.settings import SimulateConfig

PHASES = ("generation", "policy forward", "reference forward", "backward")


class _PhaseClock(TrainerCallback):
    """Sums wall time per phase (``wrap`` times a bound method) and closes one record per step."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.steps: list[dict[str, float]] = []
        self._started = time.perf_counter()

    def wrap(self, phase: Callable[..., str], method: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.totals[phase(*args, **kwargs)] += time.perf_counter() - started

        return timed

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Close the step: its phases and its whole wall time."""
        now = time.perf_counter()
        self.steps.append({**self.totals, "step": now - self._started})
        self.totals.clear()
        self._started = now


def summary(steps: list[dict[str, float]], rollouts: int) -> dict[str, Any]:
    """Rollouts/s and the median seconds per step of each phase, over the steps after the first two."""
    kept = steps[2:] or steps
    median = {name: statistics.median(s.get(name, 0.0) for s in kept) for name in ("step", *PHASES)}
    median["other"] = max(0.0, median["step"] - sum(median[name] for name in PHASES))
    return {"rollouts_per_second": rollouts / median["step"], "seconds": median, "steps": len(kept)}


def measure_trl(
    base: Path,
    processor: Any,
    prompts: datasets.Dataset,
    settings: GrpoSettings,
    work: Path,
    trainer_class: type[GRPOTrainer],
) -> dict[str, Any]:
    """Train ``settings.steps`` steps with ``trainer_class`` as the server builds it; time each phase."""
    trainer = build_grpo_trainer(
        base_model=base,
        processor=processor,
        prompts=prompts,
        reward_funcs=[GoldReward()],
        settings=settings,
        output_dir=work,
        quiet=True,
        trainer_class=trainer_class,
    )
    clock = _PhaseClock()
    ref = trainer.ref_model
    trainer._generate = clock.wrap(lambda *a, **k: "generation", trainer._generate)  # type: ignore[method-assign]
    trainer._get_per_token_logps_and_entropies = clock.wrap(  # type: ignore[method-assign]
        lambda model, *a, **k: "reference forward" if model is ref else "policy forward",
        trainer._get_per_token_logps_and_entropies,
    )
    trainer.accelerator.backward = clock.wrap(lambda *a, **k: "backward", trainer.accelerator.backward)
    trainer.add_callback(clock)
    trainer.train()
    return summary(clock.steps, settings.prompts_per_step * settings.group_size)


class MinimalGrpo:
    """A hand-written GRPO loop: what a step must cost on this model, batch and reward.

    Each of the B images is processed and encoded once per pass: ``generate`` samples the G answers of a
    prompt with ``num_return_sequences`` (transformers encodes the images before expanding), and the
    log-prob passes give the model each image's features G times through ``mm_encoder_outputs``.
    """

    def __init__(self, base: Path, prompts: datasets.Dataset, settings: GrpoSettings) -> None:
        vlm = load_vlm(base)
        self.policy: Any = vlm.model
        self.processor, self.prompts, self.settings = vlm.processor, prompts, settings
        self.policy.train()
        self.reference = load_vlm(base).model.requires_grad_(False)
        # TRL's defaults: AdamW without weight decay, a linear decay to 0, gradients clipped at norm 1.
        self.optimizer = torch.optim.AdamW(
            self.policy.parameters(), lr=settings.learning_rate, weight_decay=0.0
        )
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda n: 1 - n / settings.steps)
        shuffled = torch.randperm(len(prompts), generator=torch.Generator().manual_seed(settings.seed))
        self.order = shuffled.tolist()
        self.eos = self.policy.generation_config.eos_token_id
        self.sampling = {
            "do_sample": True,
            "temperature": settings.temperature,
            "top_k": 0,
            "top_p": 1.0,
            "max_new_tokens": settings.max_completion_length,
            "num_return_sequences": settings.group_size,
            "suppress_tokens": [self.policy.config.image_token_id],
            "pad_token_id": self.processor.tokenizer.pad_token_id,
            "eos_token_id": self.eos,
        }

    def step(self, index: int) -> dict[str, float]:
        """One GRPO step on the ``index``-th batch of B prompts; the seconds spent in each phase."""
        clock: dict[str, float] = {}
        started = time.perf_counter()
        b, g = self.settings.prompts_per_step, self.settings.group_size
        rows = self.prompts[[self.order[(index * b + i) % len(self.order)] for i in range(b)]]
        mark = time.perf_counter()
        inputs = self.processor(
            images=rows["image"],
            text=[vqa_prompt(self.processor, q) for q in rows["question"]],
            padding=True,
            padding_side="left",
            return_tensors="pt",
        )
        with torch.no_grad():
            sequences = self.policy.generate(**inputs, **self.sampling)
        prompt_length = inputs["input_ids"].size(1)
        completions = sequences[:, prompt_length:]
        is_eos = completions == self.eos
        mask = (is_eos.int().cumsum(1) - is_eos.int()) == 0  # up to and including the first EOS
        texts = self.processor.batch_decode(completions, skip_special_tokens=True)
        clock["generation"] = time.perf_counter() - mark
        answers = [a for a in rows["answer"] for _ in range(g)]
        rewards = torch.tensor(GoldReward()([], texts, answer=answers)).view(b, g)
        advantages = (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-4)
        batch = {
            "input_ids": sequences,
            "attention_mask": torch.cat([inputs["attention_mask"].repeat_interleave(g, 0), mask.long()], 1),
            "mm_token_type_ids": torch.cat(
                [inputs["mm_token_type_ids"].repeat_interleave(g, 0), torch.zeros_like(completions)], 1
            ),
            "image_grid_thw": inputs["image_grid_thw"].repeat_interleave(g, 0),
        }
        mark = time.perf_counter()
        with torch.no_grad():
            reference = self._logps(self.reference, batch, inputs, completions)
        clock["reference forward"] = time.perf_counter() - mark
        mark = time.perf_counter()
        policy = self._logps(self.policy, batch, inputs, completions)
        clock["policy forward"] = time.perf_counter() - mark
        kl = torch.exp(reference - policy) - (reference - policy) - 1
        per_token = -torch.exp(policy - policy.detach()) * advantages.view(-1, 1) + self.settings.beta * kl
        loss = ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()
        mark = time.perf_counter()
        loss.backward()
        clock["backward"] = time.perf_counter() - mark
        torch.nn.utils.clip_grad_norm_(self.policy.parameters(), 1.0)
        self.optimizer.step()
        self.schedule.step()
        self.optimizer.zero_grad(set_to_none=True)
        clock["step"] = time.perf_counter() - started
        return clock

    def _logps(
        self, model: Any, batch: dict[str, torch.Tensor], inputs: Any, completions: torch.Tensor
    ) -> torch.Tensor:
        """Per-token log-probs of ``completions`` under ``model``, each image encoded once."""
        g = self.settings.group_size
        images = model.model.get_image_features(
            inputs["pixel_values"], inputs["image_grid_thw"], return_dict=True
        ).pooler_output
        per_rollout = tuple(f for f in images for _ in range(g))
        encoded = BaseModelOutputWithPooling(pooler_output=per_rollout)  # type: ignore[arg-type]
        hidden = model.model(**batch, mm_encoder_outputs={"image": encoded}).last_hidden_state
        logits = model.lm_head(hidden[:, -completions.size(1) - 1 : -1]) / self.settings.temperature
        return torch.log_softmax(logits, -1).gather(-1, completions.unsqueeze(-1)).squeeze(-1)


def measure_minimal(base: Path, prompts: datasets.Dataset, settings: GrpoSettings) -> dict[str, Any]:
    """Run ``settings.steps`` steps of the minimal loop; the same figures as ``measure_trl``."""
    loop = MinimalGrpo(base, prompts, settings)
    steps = [loop.step(i) for i in range(settings.steps)]
    return summary(steps, settings.prompts_per_step * settings.group_size)


def print_table(results: dict[str, dict[str, Any]], title: str) -> None:
    """The figures as one Markdown table, then each run's ratio to the minimal loop."""
    print(f"\n{title}")
    print("| path | rollouts/s | step ms | generation | policy fwd | reference fwd | backward | other |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        ms = [f"{1000 * r['seconds'][k]:.0f}" for k in ("step", *PHASES, "other")]
        print(f"| {name} | {r['rollouts_per_second']:.0f} | {' | '.join(ms)} |")
    minimal = results[MINIMAL]["rollouts_per_second"]
    for name, r in results.items():
        if name != MINIMAL:
            print(f"{name} / minimal loop: {r['rollouts_per_second'] / minimal:.2f}× the rollouts per second")


MINIMAL = "minimal GRPO loop"


def alternated(
    variants: dict[str, Callable[[int], dict[str, Any]]], rounds: int
) -> Iterable[tuple[str, Any]]:
    """Each variant once per round, in turn, so none always runs first; yields (name, result)."""
    for round_ in range(rounds):
        for name, run in variants.items():
            yield name, run(round_)


def main() -> None:
    """Measure each path in this process, alternated, and print the comparison."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=20, help="GRPO steps per run (the first 2 are warm-up).")
    parser.add_argument("--prompts", type=int, default=8, help="B: prompts per step.")
    parser.add_argument("--group", type=int, default=8, help="G: completions per prompt.")
    parser.add_argument("--rounds", type=int, default=2, help="Runs of each path, alternated (fastest kept).")
    parser.add_argument(
        "--checkpointing", action="store_true", help="Also run the subclass with gradient checkpointing on."
    )
    parser.add_argument(
        "--threads", type=int, help="torch CPU threads (default: torch's); 1 where other jobs share the CPU."
    )
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = SimulateConfig().quick()  # the quick run's 150-step base (cached): short, realistic answers
    splits = check_recipe_data(recipe)
    base = recipe_base(recipe, splits)
    processor = load_vlm(base).processor
    prompts = grpo_prompts(splits.prompts.select(range(512)), balance_kinds=True)
    settings = GrpoSettings(
        steps=args.steps, prompts_per_step=args.prompts, group_size=args.group, save_steps=10_000
    )
    with tempfile.TemporaryDirectory() as work:

        def trl(trainer_class: type[GRPOTrainer], checkpointing: bool = False) -> Callable[[int], Any]:
            variant = dataclasses.replace(settings, gradient_checkpointing=checkpointing)
            return lambda round_: measure_trl(
                base,
                processor,
                prompts,
                variant,
                Path(work) / f"{trainer_class.__name__}-{round_}",
                trainer_class,
            )

        variants = {
            "TRL GRPOTrainer (stock)": trl(GRPOTrainer),
            "TRL ImageOnceGRPOTrainer (server)": trl(ImageOnceGRPOTrainer),
            MINIMAL: lambda round_: measure_minimal(base, prompts, settings),
        }
        if args.checkpointing:
            variants["ImageOnceGRPOTrainer, checkpointing on"] = trl(ImageOnceGRPOTrainer, checkpointing=True)
        runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for name, result in alternated(variants, args.rounds):
            runs[name].append(result)
            print(f"{name}: {result['rollouts_per_second']:.0f} rollouts/s", flush=True)
    results = {name: min(found, key=lambda r: r["seconds"]["step"]) for name, found in runs.items()}
    print_table(
        results,
        f"GRPO throughput, B = {args.prompts} × G = {args.group}, tiny Qwen2-VL, gold reward, "
        f"median over steps 3–{args.steps}, fastest of {args.rounds} alternated runs",
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
