"""DP reward models on easy-VQA shards: held-out pairwise accuracy and training time at ε = ∞, 8, 3, 1.

Run: ``python benchmarks/dp_reward_models.py`` (add ``--base /path/to/base`` to put LoRA on a pretrained
tiny Qwen2-VL such as the one ``secure-mor base pretrain`` writes; without it a random tiny VLM is used).
One client per question kind (the default by-kind split), each pair one privacy unit, δ = 1e-5,
PRV accountant, Poisson sampling. Prints a Markdown table per architecture and the mean over shards.
Time = the whole training call (DP: including the noise calibration of ``make_private_with_epsilon``).
Also times the compact model with hooks instead of ghost clipping, to back the choice of mode.
Targets (issue 4): compact at ε = 3 within 5 points of ε = ∞; DP time ≤ 2× non-private time.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
import warnings
from pathlib import Path

import torch

from secure_mor.client.config import ClientConfig, PrivacyConfig, RewardModelConfig, TrainingConfig
from secure_mor.client.ledger import PrivacyLedger
from secure_mor.client.run import client_pairs
from secure_mor.client.training import TrainResult, train_reward_model
from secure_mor.crypto.kit import FederationConfig
from secure_mor.crypto.signing import SigningKey

SHARDS = ("color", "shape", "yesno")


def run(arch: str, shard: str, epsilon: float, args: argparse.Namespace, mode: str = "auto") -> TrainResult:
    compact = arch == "compact"
    model = RewardModelConfig(
        architecture=arch,  # type: ignore[arg-type]
        shard=shard,
        base_model=None if compact else args.base,
        limit=0 if compact else args.lora_pairs,
    )
    training = (
        TrainingConfig(grad_sample_mode=mode)  # type: ignore[arg-type]
        if compact
        else TrainingConfig(
            epochs=args.lora_epochs, batch_size=32, physical_batch_size=32, learning_rate=5e-3
        )
    )
    config = ClientConfig(federation=FederationConfig(identity="client:bench"), reward_model=model)
    split = client_pairs(config)
    with tempfile.TemporaryDirectory() as folder:
        ledger = PrivacyLedger(Path(folder) / "ledger.jsonl", SigningKey.generate("client:bench"))
        privacy = PrivacyConfig(epsilon=epsilon if math.isfinite(epsilon) else 1.0, budget=1e6)
        return train_reward_model(
            split.train, split.heldout, model_config=model, training=training, privacy=privacy,
            epsilon=epsilon, ledger=ledger,
        )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default="compact,lora-vlm")
    parser.add_argument("--epsilons", default="inf,8,3,1")
    parser.add_argument("--shards", default=",".join(SHARDS))
    parser.add_argument("--base", type=Path, default=None, help="Pretrained VLM folder for lora-vlm.")
    parser.add_argument("--lora-pairs", type=int, default=0, help="lora-vlm: pairs per shard (0 = all).")
    parser.add_argument("--lora-epochs", type=int, default=3)
    parser.add_argument(
        "--json", type=Path, help="Also write the figures as JSON here (benchmarks/run_all.py)."
    )
    args = parser.parse_args()
    records: list[dict[str, object]] = []
    warnings.filterwarnings("ignore")
    epsilons = [float(e) for e in args.epsilons.split(",")]
    print(f"torch threads: {torch.get_num_threads()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    for arch in args.archs.split(","):
        print(f"### {arch}\n")
        print(
            "| shard | ε | ε spent | σ | steps | pairs | held-out acc | time (s) | σ search (s) | ×non-DP |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        means: dict[float, list[float]] = {e: [] for e in epsilons}
        ratios: dict[float, list[float]] = {e: [] for e in epsilons}
        for shard in args.shards.split(","):
            base_time = math.nan
            for epsilon in epsilons:
                result = run(arch, shard, epsilon, args)
                if math.isinf(epsilon):
                    base_time = result.seconds
                ratio = result.seconds / base_time
                records.append(
                    {"arch": arch, "shard": shard, "epsilon": epsilon, "accuracy": result.accuracy}
                    | {"seconds": result.seconds, "ratio_to_non_private": ratio}
                )
                means[epsilon].append(result.accuracy)
                ratios[epsilon].append(ratio)
                spent = "∞" if math.isinf(result.epsilon) else f"{result.epsilon:.2f}"
                print(
                    f"| {shard} | {epsilon:g} | {spent} | {result.noise_multiplier:.2f} | {result.steps} | "
                    f"{result.dataset_size} | {result.accuracy:.3f} | {result.seconds:.1f} | "
                    f"{result.setup_seconds:.1f} | {ratio:.2f} |",
                    flush=True,
                )
        print("\n| ε | mean held-out acc | Δ vs ∞ (points) | mean time / non-DP |\n| --- | --- | --- | --- |")
        reference = sum(means[epsilons[0]]) / len(means[epsilons[0]])
        for epsilon in epsilons:
            mean = sum(means[epsilon]) / len(means[epsilon])
            ratio = sum(ratios[epsilon]) / len(ratios[epsilon])
            print(f"| {epsilon:g} | {mean:.3f} | {100 * (mean - reference):+.1f} | {ratio:.2f} |")
        print()
        if arch == "compact" and 3.0 in epsilons:
            ghost = run(arch, "color", 3.0, args, mode="ghost")
            hooks = run(arch, "color", 3.0, args, mode="hooks")
            print(
                f"compact, color, ε = 3: ghost {ghost.seconds:.1f} s vs hooks {hooks.seconds:.1f} s\n",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps({"rows": records}, indent=2, default=str))


if __name__ == "__main__":
    main()
