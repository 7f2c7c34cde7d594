"""VQA data: source adapters, the image-disjoint federated splits, and clients' preference pairs."""

from secure_mor.data.config import ClientSplit, ColumnMap, DataConfig, Fractions
from secure_mor.data.preferences import PAIR_FEATURES, answers_by_kind, build_preference_pairs
from secure_mor.data.schema import VQA_COLUMNS, VQA_FEATURES, normalize_answer
from secure_mor.data.sources import load_easy_vqa, load_hf_vqa, load_vqa
from secure_mor.data.splits import FederatedSplits, load_splits, make_splits

__all__ = [
    "PAIR_FEATURES",
    "VQA_COLUMNS",
    "VQA_FEATURES",
    "ClientSplit",
    "ColumnMap",
    "DataConfig",
    "FederatedSplits",
    "Fractions",
    "answers_by_kind",
    "build_preference_pairs",
    "load_easy_vqa",
    "load_hf_vqa",
    "load_splits",
    "load_vqa",
    "make_splits",
    "normalize_answer",
]
