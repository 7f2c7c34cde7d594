"""The root Typer app and the consoles every command prints through."""

from __future__ import annotations

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
    """Hide the libraries' own progress bars and info logs: the CLI draws its own progress."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
