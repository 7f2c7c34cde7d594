"""GRPO throughput of the server's TRL path, and where a step's time goes.

Runs ``server/grpo.py``'s ``build_grpo_trainer`` (TRL's ``GRPOTrainer``) on the same tiny base, batch
(B prompts × G completions, kind-balanced easy-VQA prompts) and reward (the gold exact match, so no
client is involved) under each setting compared, in one process, one after the other, and prints
rollouts per second (median step time over the steps after the first two; each setting runs
``--rounds`` times, alternated with the other, and its fastest run is kept) and, per step, the time in
generation, the policy's log-prob forward, the reference's, the backward pass and the rest. Settings
compared: ``grpo.gradient_checkpointing`` off (the project's default) and on (TRL's default).

    .venv/bin/python benchmarks/grpo_throughput.py [--steps 20] [--json out.json]

Nothing here asserts a time. A minimal hand-written GRPO loop on the same model, the second reference
point the project wants beside TRL, is not written yet.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from secure_mor.server.grpo import build_grpo_trainer, grpo_prompts
from secure_mor.server.rewards import GoldReward
from secure_mor.server.settings import GrpoSettings
from secure_mor.simulate.preflight import check_recipe_data
from secure_mor.simulate.runner import recipe_base
from secure_mor.simulate.settings import SimulateConfig


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


def measure(base: Path, processor: Any, prompts: Any, settings: GrpoSettings, work: Path) -> dict[str, Any]:
    """Train ``settings.steps`` steps; return rollouts/s and the median seconds per step of each phase."""
    trainer = build_grpo_trainer(
        base_model=base,
        processor=processor,
        prompts=prompts,
        reward_funcs=[GoldReward()],
        settings=settings,
        output_dir=work,
        quiet=True,
    )
    clock = _PhaseClock()
    ref = trainer.ref_model
    trainer._generate_single_turn = clock.wrap(  # type: ignore[method-assign]
        lambda *a, **k: "generation", trainer._generate_single_turn
    )
    trainer._get_per_token_logps_and_entropies = clock.wrap(  # type: ignore[method-assign]
        lambda model, *a, **k: "reference forward" if model is ref else "policy forward",
        trainer._get_per_token_logps_and_entropies,
    )
    trainer.accelerator.backward = clock.wrap(lambda *a, **k: "backward", trainer.accelerator.backward)
    trainer.add_callback(clock)
    trainer.train()
    kept = clock.steps[2:] or clock.steps
    median = {
        name: statistics.median(step.get(name, 0.0) for step in kept)
        for name in ("step", "generation", "policy forward", "reference forward", "backward")
    }
    median["other"] = max(0.0, median["step"] - sum(v for k, v in median.items() if k != "step"))
    rollouts = settings.prompts_per_step * settings.group_size
    return {"rollouts_per_second": rollouts / median["step"], "seconds": median, "steps": len(kept)}


def main() -> None:
    """Measure each setting in this process and print the comparison."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--steps", type=int, default=20, help="GRPO steps per setting (the first 2 are warm-up)."
    )
    parser.add_argument("--prompts", type=int, default=8, help="B: prompts per step.")
    parser.add_argument("--group", type=int, default=8, help="G: completions per prompt.")
    parser.add_argument("--rounds", type=int, default=2, help="Runs of each setting, alternated (best kept).")
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args()
    recipe = SimulateConfig().quick()  # the quick run's 150-step base (cached): short, realistic answers
    splits = check_recipe_data(recipe)
    base = recipe_base(recipe, splits)
    from secure_mor.models.factory import load_vlm

    processor = load_vlm(base).processor
    prompts = grpo_prompts(splits.prompts.select(range(512)), balance_kinds=True)
    settings = GrpoSettings(
        steps=args.steps, prompts_per_step=args.prompts, group_size=args.group, save_steps=10_000
    )
    variants = {"checkpointing off (default)": False, "checkpointing on (TRL)": True}
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as work:
        for round_ in range(args.rounds):  # alternated, so neither setting always runs first
            for name, checkpointing in variants.items():
                variant = dataclasses.replace(settings, gradient_checkpointing=checkpointing)
                folder = Path(work) / f"{round_}-{checkpointing}"
                runs[name].append(measure(base, processor, prompts, variant, folder))
    results = {name: min(found, key=lambda r: r["seconds"]["step"]) for name, found in runs.items()}
    print(
        f"\nGRPO throughput, B = {args.prompts} × G = {args.group}, tiny Qwen2-VL, gold reward, "
        f"median over steps 3–{args.steps}"
    )
    print("| setting | rollouts/s | step ms | generation | policy fwd | reference fwd | backward | other |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        s = r["seconds"]
        print(
            f"| {name} | {r['rollouts_per_second']:.0f} | {1000 * s['step']:.0f} | "
            f"{1000 * s['generation']:.0f} | {1000 * s['policy forward']:.0f} | "
            f"{1000 * s['reference forward']:.0f} | {1000 * s['backward']:.0f} | {1000 * s['other']:.0f} |"
        )
    off, on = (r["rollouts_per_second"] for r in results.values())
    print(f"\ncheckpointing off / on: {off / on:.2f}× the rollouts per second (same run)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
