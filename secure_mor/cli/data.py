"""``secure-mor data …``: inspect the VQA data and its federated splits."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import typer
from rich.table import Table

from secure_mor.cli.app import console
from secure_mor.cli.options import data_config_from
from secure_mor.data import load_splits

app = typer.Typer(help="Inspect VQA datasets and their federated splits.", no_args_is_help=True)


@app.command("show")
def show(
    config: Path | None = typer.Option(
        None, "--config", "-c", help="TOML file with a \\[data] table (default: easy-VQA, seed 0)."
    ),
    source: str | None = typer.Option(
        None, "--dataset", help="Override data.source: 'easy-vqa', a local dataset path or a hub id."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Override data.seed."),
) -> None:
    """Print the dataset's splits (image-disjoint), their sizes and their question kinds."""
    data_config = data_config_from(config, source=source, seed=seed)
    splits = load_splits(data_config)
    named = splits.named()
    kinds = sorted({kind for split in named.values() for kind in set(split["kind"])})
    table = Table(
        title=f"{data_config.source} · seed {data_config.seed} · clients {data_config.clients.mode}"
    )
    table.add_column("split")
    table.add_column("images", justify="right")
    table.add_column("questions", justify="right")
    for kind in kinds:
        table.add_column(kind, justify="right")
    for name, split in named.items():
        counts = Counter(split["kind"])
        table.add_row(
            name,
            str(len(set(split["image_id"]))),
            str(len(split)),
            *(str(counts.get(kind, 0)) for kind in kinds),
        )
    console.print(table)
