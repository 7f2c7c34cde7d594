"""Rich progress bars for long CLI work (training steps, evaluation batches)."""

from __future__ import annotations

from collections.abc import Callable

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from secure_mor.cli.app import console_err


def progress_bar() -> Progress:
    """A progress display on stderr: description, bar, n/total, elapsed and remaining time."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console_err,
        transient=False,
    )


PhaseProgress = Callable[[str, float, float | None, str], None]
"""Called with (phase, done, total or None, detail) by long runs (simulate, experiment)."""


def phase_progress(bar: Progress) -> PhaseProgress:
    """A callback that keeps one line of ``bar`` per phase and updates it."""
    tasks: dict[str, TaskID] = {}

    def report(phase: str, done: float, total: float | None, detail: str) -> None:
        if phase not in tasks:
            tasks[phase] = bar.add_task(phase, total=total, status=detail)
        bar.update(tasks[phase], completed=done, total=total, status=detail)

    return report
