"""Cells of the grid and their results: small immutable records, kept in an append-only CSV.

A cell is (method, ε, seed); ε is ``None`` for methods that do not use the clients' data (base, gold).
``ResultStore`` appends one flushed, fsynced row per finished cell, so an interrupted experiment loses
at most the cell it was running, and a rerun skips every cell already in the file.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from secure_mor.errors import SecureMorError

COLUMNS = ("method", "epsilon", "seed", "accuracy", "expected", "seconds", "details")
"""``accuracy`` and ``expected`` are JSON objects by question kind (the data's kinds, and overall)."""
_EASY_VQA_KINDS = ("color", "shape", "yesno", "overall")
LEGACY_COLUMNS = (
    "method", "epsilon", "seed", *_EASY_VQA_KINDS, *(f"expected_{k}" for k in _EASY_VQA_KINDS), "seconds",
    "details",
)  # fmt: skip
"""The header of results files written before kinds followed the data (easy-VQA's kinds as columns)."""


class ResultsFileError(SecureMorError):
    """``results.csv`` cannot be read back (the message names the file and the row)."""


def format_epsilon(epsilon: float | None) -> str:
    """How ε is written in files and tables: ``inf``, ``3``, ``0.5``; empty when it does not apply."""
    if epsilon is None:
        return ""
    return "inf" if math.isinf(epsilon) else f"{epsilon:g}"


@dataclass(frozen=True)
class Cell:
    """One run of the grid."""

    method: str
    epsilon: float | None
    seed: int

    @property
    def name(self) -> str:
        """A folder name for the cell's outputs."""
        epsilon = format_epsilon(self.epsilon) or "na"
        return f"{self.method.replace(':', '-')}_eps-{epsilon}_seed-{self.seed}"


@dataclass(frozen=True)
class CellResult:
    """A finished cell: held-out accuracy per kind (and overall), wall time, method-specific details.

    ``accuracy`` is exact match of the greedy answer; ``expected`` the probability of the gold answer
    when sampling at temperature 1 (``secure_mor.models.evaluate``).
    """

    cell: Cell
    accuracy: dict[str, float]
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)
    expected: dict[str, float] = field(default_factory=dict)

    def row(self) -> dict[str, str]:
        """The CSV row."""
        return {
            "method": self.cell.method,
            "epsilon": format_epsilon(self.cell.epsilon),
            "seed": str(self.cell.seed),
            "accuracy": json.dumps({k: round(v, 4) for k, v in self.accuracy.items()}),
            "expected": json.dumps({k: round(v, 4) for k, v in self.expected.items()}),
            "seconds": f"{self.seconds:.1f}",
            "details": json.dumps(self.details, sort_keys=True),
        }

    @classmethod
    def from_row(cls, row: dict[str, str]) -> CellResult:
        """Parse a CSV row written by ``row``."""
        epsilon = float(row["epsilon"]) if row["epsilon"] else None
        if "accuracy" in row:
            accuracy = _scores(json.loads(row["accuracy"] or "{}"))
            expected = _scores(json.loads(row["expected"] or "{}"))
        else:  # a legacy row: one column per easy-VQA kind
            accuracy = {k: float(row[k]) for k in _EASY_VQA_KINDS if row.get(k)}
            expected = {k: float(row[f"expected_{k}"]) for k in _EASY_VQA_KINDS if row.get(f"expected_{k}")}
        cell = Cell(row["method"], epsilon, int(row["seed"]))
        return cls(cell, accuracy, float(row["seconds"]), json.loads(row["details"] or "{}"), expected)


class ResultStore:
    """The experiment's ``results.csv``: read back finished cells, append new ones durably."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._legacy = False

    def load(self) -> list[CellResult]:
        """Every finished cell in the file (none if it does not exist yet)."""
        if not self.path.exists():
            return []
        results = []
        with self.path.open(newline="") as file:
            reader = csv.DictReader(file)
            header = tuple(reader.fieldnames or ())
            if header not in (COLUMNS, LEGACY_COLUMNS):
                raise ResultsFileError(
                    f"{self.path}: header is {reader.fieldnames}; expected {', '.join(COLUMNS)} "
                    "(move the file away to start a new experiment there)"
                )
            self._legacy = header == LEGACY_COLUMNS
            for line, row in enumerate(reader, start=2):
                try:
                    results.append(CellResult.from_row(row))
                except (KeyError, TypeError, ValueError) as error:
                    raise ResultsFileError(f"{self.path}:{line}: unreadable row ({error})") from None
        return results

    def append(self, result: CellResult) -> None:
        """Append one row and make it durable before returning."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        if not new:
            self.load()  # refuses a foreign header; notes a legacy one
            if self._legacy:
                raise ResultsFileError(
                    f"{self.path}: written by an older secure-mor (one column per easy-VQA kind); it can be "
                    "read (--report-only) but not extended: run the grid with another --out"
                )
        with self.path.open("a", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=COLUMNS)
            if new:
                writer.writeheader()
            writer.writerow(result.row())
            file.flush()
            os.fsync(file.fileno())


def _scores(document: Any) -> dict[str, float]:
    if not isinstance(document, dict):
        raise ValueError(f"expected a JSON object of accuracies by kind, found {document!r}")
    return {str(k): float(v) for k, v in document.items()}


def finished(results: Iterable[CellResult]) -> set[Cell]:
    """The cells that have a result."""
    return {result.cell for result in results}
