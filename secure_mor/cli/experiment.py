"""``secure-mor experiment``: the privacy–utility grid (methods × ε × seeds), resumable."""

from __future__ import annotations

from pathlib import Path

import typer

from secure_mor.cli.app import console
from secure_mor.cli.progress import phase_progress, progress_bar
from secure_mor.config import load_config


def experiment_command(
    config: Path = typer.Option(
        ...,
        "--config",
        "-c",
        help="TOML recipe: \\[experiment], \\[fedavg] and simulate's tables (\\[data], \\[grpo], …).",
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Results folder (overrides experiment.out)."),
    report_only: bool = typer.Option(
        False, "--report-only", help="Write the table and plots from the finished cells; run nothing."
    ),
) -> int:
    """Run every unfinished cell of the grid, then write results.csv, results.md and plots."""
    import dataclasses

    from secure_mor.experiment.report import write_report  # torch, TRL: load only when run
    from secure_mor.experiment.runner import Experiment
    from secure_mor.experiment.settings import ExperimentConfig

    settings = load_config(ExperimentConfig, config)
    grid = settings.experiment
    grid = dataclasses.replace(grid, out=(out if out is not None else grid.out).expanduser().resolve())
    settings = dataclasses.replace(settings, experiment=grid)
    experiment = Experiment(settings)
    if report_only:
        results = experiment.store.load()
    else:
        with progress_bar() as bar:
            experiment.progress = phase_progress(bar)
            try:
                results = experiment.run()
            except KeyboardInterrupt:
                results = experiment.store.load()
                path = write_report(settings, results)
                console.print(
                    f"[yellow]interrupted[/]: {len(results)} finished cell(s) kept; table in {path}"
                )
                return 130
    path = write_report(settings, results)
    console.print(f"{len(results)} cell(s) · table: {path}")
    return 0
