"""The root Typer app and the consoles every command prints through."""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console

from secure_mor import __version__

console = Console()
console_err = Console(stderr=True)

app = typer.Typer(
    name="secure-mor",
    help="Federated alignment of a vision-language model with a mixture of encrypted, private rewards (MoR).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)


def _print_version(value: bool) -> None:
    if value:
        console.print(f"secure-mor {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", callback=_print_version, is_eager=True
    ),
) -> None:
    """Federated alignment of a vision-language model with a mixture of encrypted, private rewards."""
    _quiet_libraries()


def _quiet_libraries() -> None:
    """Hide the libraries' own progress bars and info logs: the CLI draws its own progress.

    Hugging Face Hub's switch covers transformers' bars; datasets has its own, set by an environment
    variable read at import or, once imported (``cli.options`` imports it), by its own switch. The
    verbosity variables are read when a command first imports those libraries, so commands that never
    load them (init, audit, keyholder serve) do not pay for importing transformers here.
    """
    from huggingface_hub.utils import disable_progress_bars  # type: ignore[attr-defined]  # a lazy export

    disable_progress_bars()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DATASETS_VERBOSITY", "error")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # datasets' own bars (map, cast)
    if "datasets" in sys.modules:  # already imported (the variable above is read at import)
        sys.modules["datasets"].disable_progress_bars()
