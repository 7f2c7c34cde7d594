"""``secure-mor eval``: exact-match accuracy of a VLM per question kind, beside the text-only baseline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from secure_mor.cli.app import console
from secure_mor.cli.options import data_config_from
from secure_mor.cli.progress import progress_bar
from secure_mor.data import load_splits
from secure_mor.errors import SecureMorError

if TYPE_CHECKING:
    from secure_mor.models.evaluate import EvalResult


def eval_command(
    model: str = typer.Option(..., "--model", "-m", help="Model folder (save_pretrained format) or hub id."),
    dataset: str | None = typer.Option(None, "--dataset", help="Override data.source (default easy-vqa)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="TOML file with a \\[data] table."),
    limit: int | None = typer.Option(
        None, "--limit", "-n", min=1, help="Evaluate a seeded random subset of N test questions."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the --limit subset."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the result as JSON to this file."),
) -> None:
    """Answer held-out test questions and report exact-match accuracy per kind and overall."""
    from secure_mor.models.evaluate import TextOnlyBaseline, evaluate_vlm, sample_rows  # torch: lazily
    from secure_mor.models.factory import load_vlm

    data_config = data_config_from(config, source=dataset)
    vlm = load_vlm(model)
    splits = load_splits(data_config)
    test = splits.test.select(sample_rows(len(splits.test), limit, seed))
    baseline = TextOnlyBaseline(splits.foundation)
    with progress_bar() as bar:
        task = bar.add_task("evaluating", total=len(test), status="")
        result = evaluate_vlm(vlm, test, baseline, progress=lambda n: bar.advance(task, n))
    console.print(_table(result, model))
    if json_out is not None:
        payload = {
            "model": model,
            "dataset": data_config.source,
            "limit": limit,
            "seed": seed,
            "scores": result.to_json(),
        }
        try:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps(payload, indent=2) + "\n")
        except OSError as error:
            raise SecureMorError(f"cannot write {json_out}: {error}") from None
        console.print(f"wrote {json_out}")


def _table(result: EvalResult, model: str) -> Table:
    table = Table(title=f"exact-match accuracy · {model}")
    table.add_column("kind")
    table.add_column("questions", justify="right")
    table.add_column("accuracy", justify="right")
    table.add_column("text-only baseline", justify="right")
    for kind, score in result.scores.items():
        table.add_row(kind, str(score.questions), f"{score.accuracy:.1%}", f"{score.baseline_accuracy:.1%}")
    return table
