"""DP reward models on easy-VQA shards: held-out pairwise accuracy and training time at ε = ∞, 8, 3, 1.

Run: ``python benchmarks/dp_reward_models.py --base ~/.cache/secure-mor/base/<key>`` (``--base``: a
pretrained tiny Qwen2-VL for lora-vlm, such as ``secure-mor base pretrain`` or ``simulate`` writes;
without it a random tiny VLM is used). ``--json PATH`` also writes every figure as a JSON dict.

One client per question kind (the default by-kind split), each pair one privacy unit, δ = 1e-5, PRV
accountant, Poisson sampling. Architectures:

- ``compact``: the client default — pretrained on the PUBLIC splits (``secure_mor.client.public_init``;
  no privacy cost, computed once per seed and cached), then trained on the private pairs with its
  convolutions and word embeddings frozen (ghost clipping on Linear layers only). Its "public only" row is the
  pretrained model before any private pair: what the private training adds is the difference.
- ``compact-scratch``: the same network from a random initialisation, every layer trained (the former
  default; ghost clipping falls back to per-pair Conv2d gradients).
- ``lora-vlm``: LoRA on the base VLM's text attention, hooks.

Fairness of the time ratio: the ε = ∞ run is the same call with the same model, the same initial
weights, the same trainable parameters, the same expected batch size and the same number of epochs
(hence of steps); it only skips Opacus. Time = the whole ``train_reward_model`` call (encoding the
pairs, DP's σ search in ``make_private_with_epsilon``, the steps, the held-out calibration, the ledger
entry); the steps alone are timed too ("loop"), and the σ search apart, so each part of DP's cost shows.
The one-off public pretraining is reported apart (it is cached and is the same for every ε). Ratios are
taken within one (shard, seed) and run back to back; wall time on a shared machine still swings with
the other processes' load, so the CPU time of this process (all its threads, ``time.process_time``) is
reported beside it as the steadier measure of the work done.
Targets (issue 4): compact at ε = 3 within 5 points of ε = ∞; DP time ≤ 2× non-private time.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import torch

from secure_mor.client.config import ClientConfig, PrivacyConfig, RewardModelConfig, TrainingConfig
from secure_mor.client.ledger import PrivacyLedger
from secure_mor.client.reward_model import build_reward_model, pairwise_accuracy
from secure_mor.client.run import PairSplit, client_pairs, public_start
from secure_mor.client.training import TrainResult, train_reward_model
from secure_mor.crypto.kit import FederationConfig
from secure_mor.crypto.signing import SigningKey
from secure_mor.data import DataConfig, FederatedSplits, load_splits

SHARDS = ("color", "shape", "yesno")


@dataclass(frozen=True)
class Setup:
    """One architecture's configs for one shard and seed."""

    config: ClientConfig
    training: TrainingConfig


def setup(arch: str, shard: str, seed: int, args: argparse.Namespace, mode: str = "auto") -> Setup:
    """The client config and training hyper-parameters of ``arch`` (the client defaults for compact)."""
    lora = arch == "lora-vlm"
    model = RewardModelConfig(
        architecture="lora-vlm" if lora else "compact",
        shard=shard,
        seed=seed,
        base_model=args.base if lora else None,
        limit=args.lora_pairs if lora else 0,
        public_pretraining=arch == "compact",
        public_cache=args.public_cache,
        **({"public_epochs": args.public_epochs} if args.public_epochs else {}),
        **({"public_pairs_per_kind": args.public_pairs} if args.public_pairs is not None else {}),
    )
    training = (
        TrainingConfig(epochs=args.lora_epochs, batch_size=32, physical_batch_size=32, learning_rate=5e-3)
        if lora
        else TrainingConfig(
            grad_sample_mode=mode,  # type: ignore[arg-type]
            epochs=args.epochs or TrainingConfig().epochs,
            learning_rate=args.learning_rate or None,
        )
    )
    config = ClientConfig(federation=FederationConfig(identity="client:bench"), reward_model=model)
    return Setup(config, training)


def run(
    s: Setup, split: PairSplit, epsilon: float, start: tuple[dict[str, torch.Tensor] | None, str | None]
) -> TrainResult:
    """One training run at ``epsilon`` with a throw-away ledger."""
    with tempfile.TemporaryDirectory() as folder:
        ledger = PrivacyLedger(Path(folder) / "ledger.jsonl", SigningKey.generate("client:bench"))
        privacy = PrivacyConfig(epsilon=epsilon if math.isfinite(epsilon) else 1.0, budget=1e6)
        return train_reward_model(
            split.train, split.heldout, model_config=s.config.reward_model, training=s.training,
            privacy=privacy, epsilon=epsilon, ledger=ledger, initial_state=start[0], public_init=start[1],
        )  # fmt: skip


def public_only(s: Setup, split: PairSplit, state: dict[str, torch.Tensor]) -> float:
    """Held-out pairwise accuracy of the publicly pretrained model, before any private pair."""
    model = build_reward_model(s.config.reward_model)
    model.module.load_state_dict(state)
    return pairwise_accuracy(model.pair_rewards(split.heldout))


def bench_arch(arch: str, splits: FederatedSplits, args: argparse.Namespace) -> dict[str, Any]:
    """Every (seed, shard, ε) run of ``arch``, printed as a Markdown table; the figures as a dict."""
    epsilons = [float(e) for e in args.epsilons.split(",")]
    chosen = {"lora-vlm": args.lora_seeds, "compact-scratch": args.scratch_seeds}.get(arch, args.seeds)
    seeds = [int(x) for x in chosen.split(",")]
    print(f"### {arch}\n")
    columns = (
        "shard | seed | ε | ε spent | σ | steps | pairs | held-out acc | wall (s) | σ search (s) | "
        "wall ×non-DP | loop ×non-DP | CPU (s) | CPU ×non-DP"
    )
    print(f"| {columns} |\n|{' --- |' * (columns.count('|') + 1)}")
    runs: list[dict[str, Any]] = []
    pretraining: dict[str, float] = {}
    for seed in seeds:
        for shard in args.shards.split(","):
            s = setup(arch, shard, seed, args)
            split = client_pairs(s.config, splits)
            began = time.perf_counter()
            start = public_start(s.config, splits)
            if start[0] is not None:
                pretraining.setdefault(str(seed), time.perf_counter() - began)
                accuracy = public_only(s, split, start[0])
                runs.append({"shard": shard, "seed": seed, "epsilon": "public only", "accuracy": accuracy})
                print(f"| {shard} | {seed} | public only | – | – | 0 | 0 | {accuracy:.3f} |{' – |' * 6}")
            base_time = base_cpu = base_loop = math.nan
            for epsilon in epsilons:
                result = run(s, split, epsilon, start)
                if math.isinf(epsilon):
                    base_time, base_cpu, base_loop = result.seconds, result.cpu_seconds, result.loop_seconds
                ratio, cpu_ratio = result.seconds / base_time, result.cpu_seconds / base_cpu
                loop_ratio = result.loop_seconds / base_loop
                spent = "∞" if math.isinf(result.epsilon) else f"{result.epsilon:.2f}"
                runs.append({
                    "shard": shard, "seed": seed, "epsilon": epsilon, "epsilon_spent": result.epsilon,
                    "noise_multiplier": result.noise_multiplier, "steps": result.steps,
                    "pairs": result.dataset_size, "accuracy": result.accuracy, "seconds": result.seconds,
                    "sigma_search_seconds": result.setup_seconds, "time_ratio": ratio,
                    "loop_seconds": result.loop_seconds, "loop_time_ratio": loop_ratio,
                    "cpu_seconds": result.cpu_seconds, "cpu_time_ratio": cpu_ratio,
                    "grad_sample_mode": result.grad_sample_mode,
                })  # fmt: skip
                print(
                    f"| {shard} | {seed} | {epsilon:g} | {spent} | {result.noise_multiplier:.2f} | "
                    f"{result.steps} | {result.dataset_size} | {result.accuracy:.3f} | "
                    f"{result.seconds:.1f} | {result.setup_seconds:.1f} | {ratio:.2f} | {loop_ratio:.2f} | "
                    f"{result.cpu_seconds:.1f} | {cpu_ratio:.2f} |",
                    flush=True,
                )
    summary = summarise(runs, epsilons)
    print(
        "\n| ε | mean held-out acc | Δ vs ∞ (points) | wall / non-DP: mean, max | loop / non-DP: mean, max "
        "| CPU / non-DP: mean, max |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for key, row in summary.items():
        times = (
            " | ".join(
                f"{row[f'{name}_mean']:.2f}, {row[f'{name}_max']:.2f}"
                for name in ("time_ratio", "loop_time_ratio", "cpu_time_ratio")
            )
            if "time_ratio_mean" in row
            else "– | – | –"
        )
        print(f"| {key} | {row['accuracy']:.3f} | {row['delta_points']:+.1f} | {times} |")
    if pretraining:
        print(f"\npublic pretraining (one-off, cached; per seed): {pretraining} s")
    out: dict[str, Any] = {"runs": runs, "summary": summary, "public_pretraining_seconds": pretraining}
    if "3" in summary:
        out["gap_at_3_points"] = -summary["3"]["delta_points"]
        out["time_ratio_at_3"] = summary["3"]["time_ratio_mean"]
        out["cpu_time_ratio_at_3"] = summary["3"]["cpu_time_ratio_mean"]
        out["loop_time_ratio_at_3"] = summary["3"]["loop_time_ratio_mean"]
    print()
    return out


def summarise(runs: list[dict[str, Any]], epsilons: list[float]) -> dict[str, dict[str, float]]:
    """Mean accuracy, gap to ε = ∞ and time ratios per ε (and for the public-only model)."""
    keys: list[Any] = (["public only"] if any(r["epsilon"] == "public only" for r in runs) else []) + epsilons
    reference = _mean([r["accuracy"] for r in runs if r["epsilon"] == epsilons[0]])
    summary: dict[str, dict[str, float]] = {}
    for key in keys:
        chosen = [r for r in runs if r["epsilon"] == key]
        accuracy = _mean([r["accuracy"] for r in chosen])
        row = {"accuracy": accuracy, "delta_points": 100 * (accuracy - reference)}
        if key != "public only":
            for name in ("time_ratio", "loop_time_ratio", "cpu_time_ratio"):
                ratios = [r[name] for r in chosen]
                row |= {f"{name}_mean": _mean(ratios), f"{name}_max": max(ratios)}
        summary["public only" if key == "public only" else f"{key:g}"] = row
    return summary


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def modes(splits: FederatedSplits, args: argparse.Namespace) -> dict[str, float]:
    """Compact (the default) on the colour shard at ε = 3: ghost clipping vs hooks, seconds."""
    out = {}
    for mode in ("ghost", "hooks"):
        s = setup("compact", "color", 0, args, mode=mode)
        out[mode] = run(s, client_pairs(s.config, splits), 3.0, public_start(s.config, splits)).seconds
    print(f"compact, color, ε = 3: ghost {out['ghost']:.1f} s vs hooks {out['hooks']:.1f} s\n", flush=True)
    return out


def main() -> None:
    """Parse the arguments, run every architecture, print the tables, write the JSON if asked."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--archs", default="compact,compact-scratch,lora-vlm")
    parser.add_argument("--epsilons", default="inf,8,3,1", help="The first one is the reference (inf).")
    parser.add_argument("--shards", default=",".join(SHARDS))
    parser.add_argument("--seeds", default="0,1", help="Seeds of the compact models.")
    parser.add_argument("--scratch-seeds", default="0", help="Seeds of compact-scratch (reference).")
    parser.add_argument("--lora-seeds", default="0", help="Seeds of lora-vlm (slow on CPU).")
    parser.add_argument("--base", type=Path, default=None, help="Pretrained VLM folder for lora-vlm.")
    parser.add_argument("--lora-pairs", type=int, default=0, help="lora-vlm: pairs per shard (0 = all).")
    parser.add_argument("--lora-epochs", type=int, default=3)
    parser.add_argument(
        "--public-cache", type=Path, default=RewardModelConfig().public_cache.expanduser(),
        help="Cache of the compact model's publicly pretrained weights.",
    )  # fmt: skip
    parser.add_argument("--public-epochs", type=int, default=0, help="compact: 0 = the client default.")
    parser.add_argument("--public-pairs", type=int, default=None, help="compact: per kind; unset = default.")
    parser.add_argument("--epochs", type=int, default=0, help="compact: private epochs; 0 = the default.")
    parser.add_argument("--learning-rate", type=float, default=0.0, help="compact: 0 = the default.")
    parser.add_argument("--json", type=Path, default=None, help="Also write the figures here (a JSON dict).")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    datasets.disable_progress_bars()
    print(f"torch threads: {torch.get_num_threads()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    splits = load_splits(DataConfig())
    figures: dict[str, Any] = {
        "benchmark": "dp_reward_models",
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    for arch in args.archs.split(","):
        figures[arch] = bench_arch(arch, splits, args)
        if arch == "compact" and "3" in args.epsilons.split(","):
            figures["compact_grad_sample_modes_seconds"] = modes(splits, args)
    figures["rows"] = [  # every trained run, flat (what benchmarks/run_all.py reads)
        {"arch": arch, **row}
        for arch in args.archs.split(",")
        for row in figures[arch]["runs"]
        if row["epsilon"] != "public only"
    ]
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
