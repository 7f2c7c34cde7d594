"""``secure-mor simulate``: run the whole federation on this machine and write a report."""

from __future__ import annotations

from pathlib import Path

import typer

from secure_mor.cli.app import console
from secure_mor.cli.progress import phase_progress, progress_bar


def simulate_command(
    quick: bool = typer.Option(False, "--quick", help="Test size: the same code path, smaller numbers."),
    out: Path = typer.Option(
        Path("runs/simulate"), "--out", "-o", help="Folder for the kit, logs and report."
    ),
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        help="TOML recipe: \\[simulate], \\[data], \\[base], \\[\\[clients]], \\[reward_models], \\[router], "
        "\\[grpo], \\[eval], \\[secure] (examples/own_data.toml).",
    ),
) -> int:
    """Provision a kit, train the clients' DP reward models, run MoR GRPO across processes, audit, report."""
    from secure_mor.simulate.preflight import check_recipe_data
    from secure_mor.simulate.report import write_report  # torch, TRL: load only when run
    from secure_mor.simulate.runner import Simulation
    from secure_mor.simulate.settings import load_simulate_config

    settings = load_simulate_config(config)
    settings = settings.quick() if quick else settings
    out = out.expanduser().resolve()
    with console.status("loading and checking the data"):
        splits = check_recipe_data(settings)  # before anything is written or started
    with progress_bar() as bar:
        simulation = Simulation(settings, out, splits, progress=phase_progress(bar))
        state = simulation.run()
    path = write_report(out, settings, state)
    if state.interrupted:
        console.print(f"[yellow]interrupted[/]: every process stopped; partial report in {path}")
        return 130
    audit = "passed" if state.audit and state.audit["passed"] else "FAILED"
    console.print(f"report: {path} · audit {audit}")
    return 0 if audit == "passed" else 1
