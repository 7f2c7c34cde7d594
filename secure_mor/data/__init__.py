"""VQA data: source adapters, the image-disjoint federated splits, and clients' preference pairs.

``DataConfig`` and its parts load eagerly (they import nothing heavy, so any config can be read and
refused without loading ``datasets``); everything else is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from secure_mor.data.config import ClientSplit, ColumnMap, DataConfig, Fractions, KindLimit

if TYPE_CHECKING:
    from secure_mor.data.fingerprint import dataset_fingerprint
    from secure_mor.data.preferences import (
        PAIR_FEATURES,
        answer_candidates,
        answers_by_kind,
        build_preference_pairs,
    )
    from secure_mor.data.schema import VQA_COLUMNS, VQA_FEATURES, normalize_answer
    from secure_mor.data.sources import load_easy_vqa, load_hf_vqa, load_vqa
    from secure_mor.data.splits import FederatedSplits, load_splits, make_splits

_LAZY = {
    "dataset_fingerprint": "fingerprint",
    "PAIR_FEATURES": "preferences",
    "answer_candidates": "preferences",
    "answers_by_kind": "preferences",
    "build_preference_pairs": "preferences",
    "VQA_COLUMNS": "schema",
    "VQA_FEATURES": "schema",
    "normalize_answer": "schema",
    "load_easy_vqa": "sources",
    "load_hf_vqa": "sources",
    "load_vqa": "sources",
    "FederatedSplits": "splits",
    "load_splits": "splits",
    "make_splits": "splits",
}

__all__ = [
    "PAIR_FEATURES",
    "VQA_COLUMNS",
    "VQA_FEATURES",
    "ClientSplit",
    "ColumnMap",
    "DataConfig",
    "FederatedSplits",
    "Fractions",
    "KindLimit",
    "answer_candidates",
    "answers_by_kind",
    "build_preference_pairs",
    "dataset_fingerprint",
    "load_easy_vqa",
    "load_hf_vqa",
    "load_splits",
    "load_vqa",
    "make_splits",
    "normalize_answer",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
