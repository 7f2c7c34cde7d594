"""The simulation's ``report.md`` and its PNG plots, written from whatever the run produced.

Every number in the report is read from the run's own files (training logs, evaluations, the audit),
so a partial run (Ctrl-C) still gives a readable report of what it did.
"""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from secure_mor.simulate.settings import SimulateConfig

OVERALL = "overall"
PLOTS = ("accuracy.png", "reward.png", "router.png", "router_by_kind.png", "secure_path.png", "privacy.png")
"""Every plot the report can hold, written beside it."""
TIMINGS = (
    "scoring_seconds",
    "encryption_seconds",
    "transport_seconds",
    "fusion_seconds",
    "decryption_seconds",
)


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open() as file:
        return list(csv.DictReader(file))


def _save(figure: Any, path: Path) -> str:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path.name


def write_report(out: Path, config: SimulateConfig, state: Any) -> Path:
    """Write ``out/report.md`` (and its plots) and return its path."""
    lines = [
        "# secure-mor simulation",
        "",
        f"Data: `{config.data.source}` (split seed {config.data.seed}); clients: "
        + ", ".join(f"{c.name} ({c.architecture}, shard {c.data_shard})" for c in config.clients)
        + f"; routing: {config.simulate.routing}; ε = {config.simulate.epsilon:g} per client.",
        "",
    ]
    if state.interrupted:
        lines += ["**Interrupted (Ctrl-C): a partial report of the phases that finished.**", ""]
    lines += [
        "Phases: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in state.phases.items()),
        "",
    ]
    lines += (
        _clients(state)
        + _accuracy(out, state)
        + _training(out)
        + _router(out)
        + _router_by_kind(out)
        + _secure(out)
        + _privacy(out, state)
    )
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _clients(state: Any) -> list[str]:
    if not state.clients:
        return []
    lines = [
        "## Clients' reward models (trained under DP)",
        "",
        "| client | shard | architecture | pairs | held-out pairwise accuracy | ε | time |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, c in state.clients.items():
        lines.append(
            f"| {name} | {c.get('shard', name)} | {c['architecture']} | {c['pairs']} | "
            f"{c['heldout_accuracy']:.1%} | {c['epsilon']:.3g} | {c['seconds']:.0f} s |"
        )
    return [*lines, "", *_rankings(state)]


def _rankings(state: Any) -> list[str]:
    """The K × kinds matrix of top-1 ranking accuracy (``clients.json``'s ``ranking_top1``)."""
    rankings = {name: c["ranking_top1"] for name, c in state.clients.items() if c.get("ranking_top1")}
    kinds = sorted({kind for per_kind in rankings.values() for kind in per_kind})
    if not kinds:
        return []
    lines = [
        "What each reward model knows per kind: top-1 accuracy of the gold answer among all answers of",
        "the question's kind, on test questions of that kind (chance = 1 / the kind's answers):",
        "",
        "| client | " + " | ".join(kinds) + " |",
        "|---|" + "---|" * len(kinds),
    ]
    for name, per_kind in rankings.items():
        cells = [f"{per_kind[k]:.1%}" if k in per_kind else "–" for k in kinds]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return [*lines, "", *_private_gain(state, rankings)]


def _private_gain(state: Any, rankings: dict[str, dict[str, float]]) -> list[str]:
    """Per client, top-1 on its own shard's kind: public-only start against after private training."""
    rows = []
    for name, per_kind in rankings.items():
        client = state.clients[name]
        kind, start = client.get("shard", name), client.get("ranking_top1_start", {})
        if kind in per_kind and kind in start:
            gain = 100 * (per_kind[kind] - start[kind])
            rows.append(f"| {name} | {kind} | {start[kind]:.1%} | {per_kind[kind]:.1%} | {gain:+.1f} |")
    if not rows:
        return []
    return [
        "What the private data added: the same top-1 accuracy on the client's own kind, from the model",
        "private training starts from (public weights only, or untrained) and after it:",
        "",
        "| client | kind | public start | after private training | gain (points) |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ]


def _accuracy(out: Path, state: Any) -> list[str]:
    if state.base_eval is None and state.policy_eval is None:
        return []
    lines = [
        "## Test accuracy per kind",
        "",
        "Greedy: exact match of the greedy answer. Expected: the probability the policy gives the gold",
        "answer when sampling at temperature 1 — what GRPO's sampled rewards raise first. With",
        "`eval.balance_kinds` (the default) every kind has the same number of test questions, so overall",
        "is the mean over kinds. The text-only baseline answers each question string with its most common",
        "foundation answer, ignoring the image.",
        "",
        "| kind | greedy: base | greedy: after | expected: base | expected: after | text-only baseline |",
        "|---|---|---|---|---|---|",
    ]
    found = state.base_eval or state.policy_eval or {}
    kinds = [*sorted(k for k in found if k != OVERALL), *([OVERALL] if OVERALL in found else [])]
    for kind in kinds:
        base = (state.base_eval or {}).get(kind, {})
        after = (state.policy_eval or {}).get(kind, {})
        baseline = base.get("text_only_baseline", after.get("text_only_baseline"))
        values = (
            base.get("accuracy"),
            after.get("accuracy"),
            base.get("expected_accuracy"),
            after.get("expected_accuracy"),
            baseline,
        )
        cells = [f"{v:.1%}" if isinstance(v, float) else "–" for v in values]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines += _most_accurate_client(state, kinds)
    if state.base_eval and state.policy_eval:
        figure, axis = plt.subplots(figsize=(6, 3.2))
        x = range(len(kinds))
        axis.bar([i - 0.2 for i in x], [state.base_eval[k]["accuracy"] for k in kinds], 0.4, label="base")
        axis.bar(
            [i + 0.2 for i in x],
            [state.policy_eval[k]["accuracy"] for k in kinds],
            0.4,
            label="after MoR GRPO",
        )
        axis.set_xticks(list(x), kinds)
        axis.set_ylabel("accuracy")
        axis.set_ylim(0, 1.18)  # room above the bars, so the legend never hides one
        axis.legend(loc="upper center", ncol=2)
        lines += ["", f"![accuracy per kind]({_save(figure, out / 'accuracy.png')})"]
    return [*lines, ""]


def _most_accurate_client(state: Any, kinds: list[str]) -> list[str]:
    """Where the client with the best held-out pairwise accuracy has its kind: what it could teach."""
    owners = {name: c for name, c in state.clients.items() if c.get("shard", name) in kinds}
    if not owners or not state.base_eval or not state.policy_eval:
        return []
    name = max(owners, key=lambda n: owners[n]["heldout_accuracy"])
    kind = owners[name].get("shard", name)
    base, after = state.base_eval[kind], state.policy_eval[kind]
    return [
        "",
        f"Most accurate client: {name} ({owners[name]['heldout_accuracy']:.1%} held-out pairwise). On its "
        f"kind ({kind}) the policy went greedy {base['accuracy']:.1%} → {after['accuracy']:.1%}, expected "
        f"{base['expected_accuracy']:.1%} → {after['expected_accuracy']:.1%} "
        f"({base['questions']} test questions of that kind).",
    ]


def _training(out: Path) -> list[str]:
    rows = _rows(out / "run" / "train_log.csv")
    if not rows:
        return []
    figure, axis = plt.subplots(figsize=(6, 3))
    steps, rewards = [int(r["step"]) for r in rows], [float(r["reward"]) for r in rows]
    axis.plot(steps, rewards, alpha=0.3, label="per step")
    window = max(1, min(25, len(rewards) // 10))
    smooth = [
        sum(rewards[max(0, i - window + 1) : i + 1]) / len(rewards[max(0, i - window + 1) : i + 1])
        for i in range(len(rewards))
    ]
    axis.plot(steps, smooth, label=f"mean of the last {window}")
    axis.legend(loc="lower right")
    axis.set_xlabel("GRPO step")
    axis.set_ylabel("reward (mean over rollouts)")
    name = _save(figure, out / "reward.png")
    first, last = sum(rewards[:window]) / window, smooth[-1]
    return [
        "## GRPO on the MoR reward",
        "",
        f"{len(rows)} steps; mean reward of the sampled answers over the first and the last {window} "
        f"steps {first:.3f} → {last:.3f} (with "
        '`grpo.mixture_reward = "top1"`, the default: the share of them that were the answer the '
        "clients' fused scores rank first among the public answers of the question's kind).",
        "",
        f"![reward]({name})",
        "",
    ]


def _router(out: Path) -> list[str]:
    rows = [r for r in _rows(out / "run" / "secure_steps.csv") if not r.get("skipped")]
    columns = [c for c in (rows[0] if rows else {}) if c.startswith("weight:")]
    if not columns:
        return []
    means = {c.removeprefix("weight:"): statistics.mean(float(r[c]) for r in rows if r[c]) for c in columns}
    figure, axis = plt.subplots(figsize=(6, 3))
    axis.bar(list(means), list(means.values()))
    axis.set_ylabel("mean router weight (scored answers)")
    lines = [
        "## Router",
        "",
        "Over every answer the clients scored: a prompt counts once per public answer of its kind (8 "
        "colours, 3 shapes, yes/no on easy-VQA), so kinds with more answers weigh more here; the table "
        "per kind below counts prompts.",
        "",
        "| client | mean weight over the scored answers |",
        "|---|---|",
    ]
    lines += [f"| {c} | {w:.3f} |" for c, w in means.items()]
    return [*lines, "", f"![router weights]({_save(figure, out / 'router.png')})", ""]


def _router_by_kind(out: Path) -> list[str]:
    """The router's mean weight per question kind and client (``run/router_weights.json``)."""
    path = out / "run" / "router_weights.json"
    if not path.exists():
        return []
    weights: dict[str, dict[str, float]] = json.loads(path.read_text())
    kinds = sorted(weights)
    clients = list(next(iter(weights.values()))) if weights else []
    if not clients:
        return []
    lines = [
        "Mean router weight per question kind of the GRPO prompts (rows) and client (columns):",
        "",
        "| kind | " + " | ".join(clients) + " |",
        "|---|" + "---|" * len(clients),
    ]
    lines += [f"| {k} | " + " | ".join(f"{weights[k][c]:.3f}" for c in clients) + " |" for k in kinds]
    figure, axis = plt.subplots(figsize=(1.6 + 1.1 * len(clients), 1.0 + 0.5 * len(kinds)))
    matrix = [[weights[k][c] for c in clients] for k in kinds]
    image = axis.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    axis.set_xticks(range(len(clients)), clients)
    axis.set_yticks(range(len(kinds)), kinds)
    axis.set_xlabel("client")
    axis.set_ylabel("prompt kind")
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            axis.text(
                j, i, f"{value:.2f}", ha="center", va="center", color="white" if value < 0.6 else "black"
            )
    figure.colorbar(image, ax=axis, label="mean weight")
    return [*lines, "", f"![router weights per kind]({_save(figure, out / 'router_by_kind.png')})", ""]


def _secure(out: Path) -> list[str]:
    rows = [r for r in _rows(out / "run" / "secure_steps.csv") if not r.get("skipped")]
    if not rows:
        return []
    medians = {t.removesuffix("_seconds"): statistics.median(float(r[t]) for r in rows) for t in TIMINGS}
    figure, axis = plt.subplots(figsize=(6, 3))
    axis.bar(list(medians), [1000 * v for v in medians.values()])
    axis.set_ylabel("median ms per step")
    lines = ["## Secure path per step (median)", "", "| part | ms |", "|---|---|"]
    lines += [f"| {k} | {1000 * v:.1f} |" for k, v in medians.items()]
    skipped = len(_rows(out / "run" / "secure_steps.csv")) - len(rows)
    lines += ["", f"{len(rows)} scoring steps decrypted, {skipped} skipped (fewer than k_min answers)."]
    return [*lines, "", f"![secure path]({_save(figure, out / 'secure_path.png')})", ""]


def _privacy(out: Path, state: Any) -> list[str]:
    if state.audit is None:
        return []
    verdict = "PASSED" if state.audit["passed"] else "FAILED"
    lines = [f"## Audit: {verdict}", "", "| client | ε spent (PRV) | ε (RDP) | budget |", "|---|---|---|---|"]
    clients = state.audit["clients"]
    lines += [
        f"| {c['identity']} | {c['epsilon_prv']:.3f} | {c['epsilon_rdp']:.3f} | {c['budget']} |"
        for c in clients
    ]
    if clients:
        figure, axis = plt.subplots(figsize=(6, 3))
        axis.bar([c["identity"] for c in clients], [c["epsilon_prv"] for c in clients])
        axis.set_ylabel("ε spent")
        lines += ["", f"![privacy]({_save(figure, out / 'privacy.png')})"]
    return [*lines, "", "The full audit is in `audit.md` and `audit.json`.", ""]
