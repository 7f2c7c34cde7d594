"""``secure-mor base pretrain``: make the CPU-scale visual foundation model."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import typer

from secure_mor.cli.app import console
from secure_mor.cli.progress import progress_bar
from secure_mor.config import load_config
from secure_mor.models.presets import PRESETS

app = typer.Typer(help="Build the base vision-language model.", no_args_is_help=True)


@app.command("pretrain")
def pretrain(
    preset: str | None = typer.Option(
        None, "--preset", help=f"Model size: {', '.join(PRESETS)} (default tiny)."
    ),
    out: Path = typer.Option(Path("runs/base"), "--out", "-o", help="Folder to write the model to."),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="TOML file with \\[data] and \\[pretrain] tables (default: built-in)."
    ),
    steps: int | None = typer.Option(None, "--steps", help="Override pretrain.steps."),
    max_minutes: float | None = typer.Option(None, "--max-minutes", help="Override pretrain.max_minutes."),
    seed: int | None = typer.Option(None, "--seed", help="Override pretrain.seed."),
) -> None:
    """Pretrain the tiny Qwen2-VL on the foundation split only (never on client shards) and save it."""
    from secure_mor.models.pretrain import BaseConfig, BasePretrainer  # torch: load only when run

    base = load_config(BaseConfig, config) if config is not None else BaseConfig()
    overrides: dict[str, Any] = {"preset": preset, "steps": steps, "max_minutes": max_minutes, "seed": seed}
    train_config = dataclasses.replace(base.pretrain, **{k: v for k, v in overrides.items() if v is not None})
    # dataclasses.replace re-runs __post_init__: command-line overrides are validated like the file.
    settings = dataclasses.replace(base, pretrain=train_config)
    with progress_bar() as bar:
        task = bar.add_task("pretraining", total=settings.pretrain.steps, status="")

        def report(step: int, total: int, loss: float) -> None:
            bar.update(task, completed=step, status=f"loss {loss:.3f}")

        result = BasePretrainer(settings).run(out, progress=report)
    console.print(
        f"saved {result.path} · {result.parameters:,} parameters · {result.steps} steps · "
        f"{result.examples:,} examples in {result.seconds:.0f} s "
        f"({result.examples / result.seconds:.0f}/s) · "
        f"loss {result.final_loss:.3f}"
    )
