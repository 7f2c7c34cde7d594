"""The VQA example schema every adapter produces, and answer normalisation for exact-match scoring."""

from __future__ import annotations

import re

import datasets

from secure_mor.errors import DataError

VQA_FEATURES = datasets.Features(
    {
        "image": datasets.Image(),
        "question": datasets.Value("string"),
        "answer": datasets.Value("string"),
        "kind": datasets.Value("string"),
        # Which image a question is about: splits are disjoint by this, not only by question.
        "image_id": datasets.Value("string"),
    }
)
VQA_COLUMNS = tuple(VQA_FEATURES)

_SPACES = re.compile(r"\s+")


def normalize_answer(text: str) -> str:
    """Lower-case, strip punctuation at the ends and collapse spaces: the form exact match compares."""
    return _SPACES.sub(" ", text.strip().lower()).strip(" .,!?;:\"'")


def check_vqa(dataset: datasets.Dataset, source: str) -> datasets.Dataset:
    """Return ``dataset`` if it has exactly the VQA columns, else raise a ``DataError`` naming ``source``."""
    missing = [c for c in VQA_COLUMNS if c not in dataset.column_names]
    if missing:
        raise DataError(
            f"{source}: dataset lacks column(s) {', '.join(missing)}; expected {', '.join(VQA_COLUMNS)}"
        )
    if len(dataset) == 0:
        raise DataError(f"{source}: dataset is empty")
    return dataset
