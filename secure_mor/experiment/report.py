"""The experiment's ``results.md`` (mean ± std over seeds) and plots, from ``results.csv`` alone.

Besides the tables it states, per ε, whether the MoR router beat ``uniform`` and every
``single:<client>`` on mean overall accuracy and how far it stayed from ``gold`` — computed from the
numbers, never written by hand.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from secure_mor.experiment.results import CellResult, format_epsilon
from secure_mor.experiment.settings import ExperimentConfig


def _stats(values: Sequence[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else 0.0


def _cell(values: Sequence[float]) -> str:
    if not values:
        return "—"
    mean, std = _stats(values)
    return f"{100 * mean:.1f} ± {100 * std:.1f}" if len(values) > 1 else f"{100 * mean:.1f}"


class Summary:
    """Accuracies grouped by (method, ε); methods without ε appear under every ε."""

    def __init__(self, config: ExperimentConfig, results: Sequence[CellResult]) -> None:
        self.config = config
        self.values: dict[tuple[str, float | None, str], list[float]] = defaultdict(list)
        for result in results:
            for kind, accuracy in result.accuracy.items():
                self.values[(result.cell.method, result.cell.epsilon, kind)].append(accuracy)
            for kind, expected in result.expected.items():
                self.values[(result.cell.method, result.cell.epsilon, f"expected_{kind}")].append(expected)

    def get(self, method: str, epsilon: float, kind: str = "overall") -> list[float]:
        """Accuracies over seeds of ``method`` at ``epsilon`` (its ε-free results if it has no ε)."""
        key_epsilon = epsilon if self.config.depends_on_epsilon(method) else None
        return self.values.get((method, key_epsilon, kind), [])

    def mean(self, method: str, epsilon: float, kind: str = "overall") -> float:
        """Mean accuracy over seeds (nan when the cell has no result)."""
        values = self.get(method, epsilon, kind)
        return statistics.fmean(values) if values else math.nan


def write_report(config: ExperimentConfig, results: Sequence[CellResult]) -> Path:
    """Write ``out/results.md`` and its plots; return the Markdown file's path.

    Columns go from the weakest privacy (inf) to the strongest, whatever order the grid ran in.
    """
    grid = dataclasses.replace(config.experiment, epsilons=tuple(sorted(config.epsilons, reverse=True)))
    config = dataclasses.replace(config, experiment=grid)
    kinds = _kinds(results)
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    summary = Summary(config, results)
    seeds = len(config.seeds)
    lines = [
        "# secure-mor experiment: privacy–utility",
        "",
        f"Held-out test accuracy (%) on {config.eval.limit} questions, mean ± std over {seeds} seed(s) "
        f"({', '.join(map(str, config.seeds))}); ε is each client's per-run budget (δ = 1e-5; inf = no DP).",
        "`base` and `gold` do not use the clients' data: the same runs appear under every ε.",
        "Two measures: *greedy* — exact match of the greedy answer; *expected* — the probability the",
        "policy gives the gold answer when sampling at temperature 1 (what GRPO's sampled rewards raise).",
        "",
        "## Greedy accuracy, overall",
        "",
        *_overall_table(config, summary, "overall"),
        "",
        "## Expected accuracy, overall",
        "",
        *_overall_table(config, summary, "expected_overall"),
        "",
        "## The claim: MoR beats uniform and every single client, and stays close to gold",
        "",
        *_claim(config, summary, "overall", "greedy"),
        *_claim(config, summary, "expected_overall", "expected"),
        "",
    ]
    lines += _rankings(config)
    lines += _router_table(results)
    lines += ["## Per question kind", ""]
    baseline = _text_only(out, results)
    for epsilon in config.epsilons:
        lines += [f"### ε = {format_epsilon(epsilon)}, greedy", ""]
        lines += [*_kind_table(config, summary, epsilon, kinds, baseline), ""]
        lines += [f"### ε = {format_epsilon(epsilon)}, expected", ""]
        lines += [*_kind_table(config, summary, epsilon, tuple(f"expected_{k}" for k in kinds), {}), ""]
    lines += _plots(config, summary, results)
    path = out / "results.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _rankings(config: ExperimentConfig) -> list[str]:
    """Per ε, each client's top-1 ranking accuracy per kind (mean over seeds), and its own kind's gain.

    Read from each (ε, seed) kit's ``reward_models.json``; the public start is the model before any
    private pair (public weights, or untrained).
    """
    lines: list[str] = []
    for epsilon in config.epsilons:
        runs = [
            json.loads(path.read_text())
            for seed in config.seeds
            if (
                path := config.out
                / "kits"
                / f"eps-{format_epsilon(epsilon)}_seed-{seed}"
                / "reward_models.json"
            ).exists()
        ]
        runs = [r for r in runs if all("ranking_top1" in c for c in r.values())]
        if not runs:
            continue
        names = list(runs[0])
        kinds = sorted({k for c in runs[0].values() for k in c["ranking_top1"]})
        lines += [
            f"### ε = {format_epsilon(epsilon)}: top-1 of the gold answer among its kind's answers "
            f"({len(runs)} seed(s))",
            "",
            "| client | " + " | ".join(kinds) + " | own kind: public start → trained |",
            "|---|" + "---|" * (len(kinds) + 1),
        ]
        for name in names:
            trained = {k: statistics.fmean(r[name]["ranking_top1"][k] for r in runs) for k in kinds}
            own = runs[0][name].get("shard", name)
            gain = "–"
            if own in kinds:
                start = statistics.fmean(r[name]["ranking_top1_start"][own] for r in runs)
                gain = f"{start:.1%} → {trained[own]:.1%} ({100 * (trained[own] - start):+.1f})"
            lines.append(f"| {name} | " + " | ".join(f"{trained[k]:.1%}" for k in kinds) + f" | {gain} |")
        lines.append("")
    return ["## What each client's reward model knows", "", *lines] if lines else []


def _router_table(results: Sequence[CellResult]) -> list[str]:
    """The MoR router's mean weight per client on prompts of each kind (all ε and seeds)."""
    weights = _router_weights(results)
    if not weights:
        return []
    clients = sorted({c for per_kind in weights.values() for c in per_kind})
    lines = [
        "## The router's mean weight per client, by prompt kind (all ε and seeds)",
        "",
        "| prompt kind | " + " | ".join(clients) + " |",
        "|---|" + "---|" * len(clients),
    ]
    for kind in sorted(weights):
        lines.append(f"| {kind} | " + " | ".join(f"{weights[kind].get(c, 0.0):.3f}" for c in clients) + " |")
    return [*lines, ""]


def _kinds(results: Sequence[CellResult]) -> tuple[str, ...]:
    """The question kinds the results hold (the data's), sorted, with overall last."""
    found = {kind for result in results for kind in result.accuracy}
    return (*sorted(found - {"overall"}), *(("overall",) if "overall" in found else ()))


def _overall_table(config: ExperimentConfig, summary: Summary, kind: str) -> list[str]:
    header = "| method | " + " | ".join(f"ε = {format_epsilon(e)}" for e in config.epsilons) + " |"
    lines = [header, "|---" * (len(config.epsilons) + 1) + "|"]
    for method in config.methods:
        cells = [_cell(summary.get(method, e, kind)) for e in config.epsilons]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def _kind_table(
    config: ExperimentConfig,
    summary: Summary,
    epsilon: float,
    kinds: tuple[str, ...],
    baseline: dict[str, float],
) -> list[str]:
    names = [k.removeprefix("expected_") for k in kinds]
    lines = ["| method | " + " | ".join(names) + " |", "|---" * (len(kinds) + 1) + "|"]
    for method in config.methods:
        cells = " | ".join(_cell(summary.get(method, epsilon, k)) for k in kinds)
        lines.append(f"| {method} | {cells} |")
    if baseline:
        row = " | ".join(f"{100 * baseline[k]:.1f}" if k in baseline else "—" for k in names)
        lines.append(f"| text-only baseline | {row} |")
    return lines


def _claim(config: ExperimentConfig, summary: Summary, kind: str, measure: str) -> list[str]:
    """Whether MoR beat uniform and every single client, and its distance to gold, per ε."""
    if "router" not in config.methods:
        return []
    singles = [m for m in config.methods if m.startswith("single:")]
    lines = []
    for epsilon in config.epsilons:
        mor = summary.mean("router", epsilon, kind)
        if math.isnan(mor):
            continue
        rivals = {m: summary.mean(m, epsilon, kind) for m in ("uniform", *singles) if m in config.methods}
        beaten = [m for m, v in rivals.items() if not math.isnan(v) and mor > v]
        lost = [m for m, v in rivals.items() if not math.isnan(v) and mor <= v]
        verdict = "holds" if not lost else "does not hold"
        text = f"- {measure}, ε = {format_epsilon(epsilon)}: MoR {100 * mor:.1f} %; it {verdict}"
        text += f" (beats {', '.join(beaten) or 'none'}" + (f"; not {', '.join(lost)})" if lost else ")")
        gold = summary.mean("gold", epsilon, kind)
        if not math.isnan(gold):
            text += f"; gold {100 * gold:.1f} % ({100 * (gold - mor):+.1f} points above MoR)"
        lines.append(text + ".")
    return lines


def _text_only(out: Path, results: Sequence[CellResult]) -> dict[str, float]:
    """The text-only baseline on the shared test questions, from any finished cell's eval.json."""
    for result in results:
        path = out / "cells" / result.cell.name / "eval.json"
        if path.exists():
            evaluation = json.loads(path.read_text())
            return {kind: float(v["text_only_baseline"]) for kind, v in evaluation.items()}
    return {}


def _plots(config: ExperimentConfig, summary: Summary, results: Sequence[CellResult]) -> list[str]:
    lines = ["## Plots", ""]
    finite = [e for e in config.epsilons if math.isfinite(e)]
    positions = {e: (i if math.isfinite(e) else len(finite)) for i, e in enumerate(config.epsilons)}
    figure, axis = plt.subplots(figsize=(7, 4))
    for method in config.methods:
        xs, means, stds = [], [], []
        for epsilon in config.epsilons:
            values = summary.get(method, epsilon)
            if values:
                mean, std = _stats(values)
                xs.append(positions[epsilon])
                means.append(100 * mean)
                stds.append(100 * std)
        if xs:
            axis.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=method)
    axis.set_xticks([positions[e] for e in config.epsilons], [format_epsilon(e) for e in config.epsilons])
    axis.set_xlabel("ε per client")
    axis.set_ylabel("overall test accuracy (%)")
    axis.legend(fontsize=7, ncol=2)
    lines.append(f"![accuracy vs ε]({_save(figure, config.out / 'accuracy_vs_epsilon.png')})")
    weights = _router_weights(results)
    if weights:
        kinds = sorted(weights)
        clients = sorted({c for per_kind in weights.values() for c in per_kind})
        figure, axis = plt.subplots(figsize=(6, 3.5))
        width = 0.8 / len(clients)
        for i, client in enumerate(clients):
            heights = [weights[k].get(client, 0.0) for k in kinds]
            axis.bar([j + i * width for j in range(len(kinds))], heights, width, label=client)
        axis.set_xticks([j + 0.4 - width / 2 for j in range(len(kinds))], kinds)
        axis.set_ylabel("mean router weight")
        axis.set_title("MoR router: weight per client per question kind (all ε, seeds)")
        axis.legend(fontsize=8)
        lines += ["", f"![router weights]({_save(figure, config.out / 'router_weights.png')})"]
    return lines


def _router_weights(results: Sequence[CellResult]) -> dict[str, dict[str, float]]:
    sums: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for result in results:
        for kind, per_client in result.details.get("router_weights", {}).items():
            if result.cell.method == "router":
                for client, weight in per_client.items():
                    sums[kind][client].append(weight)
    return {k: {c: statistics.fmean(v) for c, v in per.items()} for k, per in sums.items()}


def _save(figure: Any, path: Path) -> str:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path.name
