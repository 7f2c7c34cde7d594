"""Benchmark: base pretraining budget vs easy-VQA test accuracy per kind, with the text-only baseline.

Runs ``secure-mor base pretrain`` (the same ``BasePretrainer``) for each step budget, evaluates each
model on the same seeded 1,000 test questions, and prints a Markdown table of wall time, throughput
and exact-match accuracy per kind. The default budget should reach >= 70 % overall while leaving
headroom on at least one kind (the longer budget shows how much is left to gain).

    .venv/bin/python benchmarks/base_pretrain.py                     # default budget and 2x
    .venv/bin/python benchmarks/base_pretrain.py --steps 1500 4500 --limit 1000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from secure_mor.data import DataConfig, load_splits
from secure_mor.models.evaluate import TextOnlyBaseline, evaluate_vlm, sample_rows
from secure_mor.models.factory import load_vlm
from secure_mor.models.pretrain import BaseConfig, BasePretrainer, PretrainConfig

KINDS = ("color", "shape", "yesno", "overall")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default_steps = PretrainConfig().steps
    parser.add_argument("--steps", type=int, nargs="+", default=[default_steps, 2 * default_steps])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--limit", type=int, default=1000, help="test questions (seeded subset)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--json", type=Path, help="also write the figures as JSON here (benchmarks/run_all.py)"
    )
    args = parser.parse_args()

    splits = load_splits(DataConfig())
    test = splits.test.select(sample_rows(len(splits.test), args.limit, args.seed))
    baseline = TextOnlyBaseline(splits.foundation)
    rows = []
    for steps in args.steps:
        config = BaseConfig(pretrain=dataclasses.replace(PretrainConfig(), preset=args.preset, steps=steps))
        with tempfile.TemporaryDirectory() as out:
            started = time.monotonic()
            result = BasePretrainer(config).run(Path(out))
            wall = time.monotonic() - started
            scores = evaluate_vlm(load_vlm(out), test, baseline).scores
        rows.append((steps, wall, result.examples / result.seconds, scores))
        print(f"steps {steps}: {wall:.0f} s, overall {scores['overall'].accuracy:.1%}", flush=True)

    print(
        f"\nMachine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads; "
        f"preset {args.preset}; {len(test)} test questions (seed {args.seed})\n"
    )
    print("| steps | wall time (pretrain incl. setup) | examples/s | " + " | ".join(KINDS) + " |")
    print("|---|---|---|" + "---|" * len(KINDS))
    for steps, wall, throughput, scores in rows:
        cells = " | ".join(f"{scores[k].accuracy:.1%}" for k in KINDS)
        print(f"| {steps} | {wall / 60:.1f} min | {throughput:.0f} | {cells} |")
    first = rows[0][3]
    cells = " | ".join(f"{first[k].baseline_accuracy:.1%}" for k in KINDS)
    print(f"| text-only baseline | – | – | {cells} |")
    if args.json:
        figures = [
            {"steps": steps, "seconds": wall, "examples_per_second": throughput}
            | {f"accuracy_{k}": scores[k].accuracy for k in KINDS}
            for steps, wall, throughput, scores in rows
        ]
        args.json.write_text(json.dumps({"limit": len(test), "rows": figures}, indent=2))


if __name__ == "__main__":
    main()
