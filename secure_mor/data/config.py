"""``DataConfig``: where the VQA data comes from, how its columns map, and how it is split."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from secure_mor.config import help_field, nested, require


@dataclass(frozen=True)
class ColumnMap:
    """Names of the source dataset's columns that hold each field of the VQA schema."""

    image: str = help_field("image", "Column with the image (an Image feature, a path or bytes).")
    question: str = help_field("question", "Column with the question text.")
    answer: str = help_field("answer", "Column with the gold answer (a string, or a list: most common wins).")
    kind: str | None = help_field(None, "Column with the question kind; unset = every question is 'vqa'.")
    image_id: str | None = help_field(
        None, "Column identifying the image; unset = a hash of the image bytes."
    )


@dataclass(frozen=True)
class Fractions:
    """Shares of the training images (not questions) given to each split; the rest stays unused."""

    foundation: float = help_field(0.4, "Images for supervised pretraining of the base VLM.")
    prompts: float = help_field(0.15, "Images whose questions are the server's public GRPO prompts.")
    calibration: float = help_field(0.05, "Images for the router's public calibration set.")
    clients: float = help_field(0.4, "Images shared out among the clients' private shards.")
    test: float = help_field(
        0.2, "Images held out for testing when the source has no test split (the others share the rest)."
    )

    def __post_init__(self) -> None:
        for name in ("foundation", "prompts", "calibration", "clients", "test"):
            value = getattr(self, name)
            require(0.0 <= value <= 1.0, name, f"expected a fraction in [0, 1], found {value}")
        total = self.foundation + self.prompts + self.calibration + self.clients
        require(total <= 1.0 + 1e-9, "foundation", f"the four split fractions sum to {total:.3f}; at most 1")


@dataclass(frozen=True)
class ClientSplit:
    """How the client pool is shared out: one client per question kind, or Dirichlet(alpha) over kinds."""

    mode: Literal["by-kind", "dirichlet"] = help_field("by-kind", "'by-kind' or 'dirichlet'.")
    count: int = help_field(3, "Number of clients in 'dirichlet' mode (by-kind: one per kind).")
    alpha: float = help_field(0.5, "Dirichlet concentration: small = each client sees few kinds.")
    names: tuple[str, ...] = help_field((), "Client names in order; default: the kinds, or client-0, ….")
    images: Literal["disjoint", "shared"] = help_field(
        "disjoint",
        "by-kind: 'disjoint' gives each client its own images; 'shared' gives each client every question "
        "of its kind on all of the client pool's images (the shards share images, never a question).",
    )

    def __post_init__(self) -> None:
        require(self.count >= 1, "count", f"expected an integer ≥ 1, found {self.count}")
        require(self.alpha > 0, "alpha", f"expected a number > 0, found {self.alpha}")
        require(len(set(self.names)) == len(self.names), "names", f"names must be unique, found {self.names}")


@dataclass(frozen=True)
class KindLimit:
    """At most ``questions`` questions of ``kind`` in the foundation split; the others are left unused."""

    kind: str = help_field("color", "The question kind.")
    questions: int = help_field(100, "Most questions of that kind kept in the foundation split.")

    def __post_init__(self) -> None:
        require(self.questions >= 0, "questions", f"expected an integer ≥ 0, found {self.questions}")


@dataclass(frozen=True)
class DataConfig:
    """Source, column mapping and seeded split of the VQA data (the ``[data]`` table of a config)."""

    source: str = help_field(
        "easy-vqa",
        "'easy-vqa', a local dataset (save_to_disk folder, parquet, image folder; relative to the config "
        "file) or a hub id.",
    )
    train_split: str = help_field("train", "Split of the source that the five splits are cut from.")
    test_split: str | None = help_field(
        "test", 'Split used only by eval; unset or "" = hold out `fractions.test` of the training images.'
    )
    columns: ColumnMap = nested(ColumnMap, "Column mapping for sources other than easy-vqa.")
    fractions: Fractions = nested(Fractions, "Shares of training images per split.")
    clients: ClientSplit = nested(ClientSplit, "How client shards are formed.")
    foundation_limits: tuple[KindLimit, ...] = help_field(
        (),
        "[[data.foundation_limits]] tables (kind, questions): how little of the clients' domains is public.",
    )
    seed: int = help_field(0, "Seed of the split; the same seed always gives the same split.")

    def __post_init__(self) -> None:
        kinds = [limit.kind for limit in self.foundation_limits]
        require(len(set(kinds)) == len(kinds), "foundation_limits", f"a kind is limited twice: {kinds}")

    def default_for(self, table: Mapping[str, Any]) -> DataConfig:
        """The default a ``[data]`` table starts from: this one, unless the table names another source.

        A default split is tuned to its source (the benchmark's limits name easy-VQA's kinds and its
        fractions suit easy-VQA's size), so a table that changes the source starts from ``DataConfig()``.
        """
        source = table.get("source", self.source)
        return self if source == self.source else DataConfig()

    def resolve_paths(self, base: Path) -> DataConfig:
        """``source`` as a config file in ``base`` means it: a local path resolves against that folder.

        A source that exists there, or is spelled as a path (``./``, ``../``, ``~``, absolute), becomes
        absolute; ``easy-vqa`` and hub ids (``owner/name``) stay as written.
        """
        if self.source == "easy-vqa":
            return self
        path = Path(self.source).expanduser()
        spelled_as_path = self.source.startswith(("./", "../", "~")) or path.is_absolute()
        if spelled_as_path or (base / path).exists():
            return dataclasses.replace(self, source=str((base / path).resolve()))
        return self
