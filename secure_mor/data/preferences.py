"""Preference pairs for a client's reward model, built from its private shard only.

One pair per question: chosen = the gold answer, rejected = a different answer of the same kind drawn
from the answers that kind takes. A per-client ``label_noise`` rate swaps chosen and rejected on that
share of pairs (annotator disagreement). A pair is one privacy unit (docs/ARCHITECTURE.md, "What
protects what").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import datasets
import numpy as np

from secure_mor.data.schema import normalize_answer
from secure_mor.errors import DataError

PAIR_FEATURES = datasets.Features(
    {
        "image": datasets.Image(),
        "question": datasets.Value("string"),
        "chosen": datasets.Value("string"),
        "rejected": datasets.Value("string"),
        "kind": datasets.Value("string"),
        "image_id": datasets.Value("string"),
    }
)


def answers_by_kind(dataset: datasets.Dataset) -> dict[str, tuple[str, ...]]:
    """The distinct (normalised) answers each kind takes in ``dataset``, sorted."""
    found: dict[str, set[str]] = {}
    for kind, answer in zip(dataset["kind"], dataset["answer"], strict=True):
        found.setdefault(kind, set()).add(normalize_answer(answer))
    return {kind: tuple(sorted(answers)) for kind, answers in found.items()}


CANDIDATE_LIMIT = 16
"""A kind with more public answers than this is free-form: its answers are not listed as candidates."""


def answer_candidates(dataset: datasets.Dataset) -> dict[str, tuple[str, ...]]:
    """The answers of each kind that a sampled answer is compared with (``answers_by_kind``, 2–16 each).

    The server has the clients score them for every prompt of the kind; a client's score is an answer's
    choice probability among them. A kind with one answer has nothing to compare; one with more than
    ``CANDIDATE_LIMIT`` is free-form, and its sampled answers are scored as they are.
    """
    return {
        kind: answers
        for kind, answers in answers_by_kind(dataset).items()
        if 2 <= len(answers) <= CANDIDATE_LIMIT
    }


def build_preference_pairs(
    shard: datasets.Dataset,
    *,
    seed: int,
    label_noise: float = 0.0,
    vocabulary: Mapping[str, Sequence[str]] | None = None,
) -> datasets.Dataset:
    """Pairs (image, question, chosen, rejected) from ``shard``; ``vocabulary`` defaults to the shard's own.

    A kind with a single answer in the vocabulary cannot give a wrong answer: its questions are refused.
    """
    if not 0.0 <= label_noise <= 0.5:
        raise DataError(
            f"label_noise must be in [0, 0.5] (above 0.5 labels are mostly wrong), found {label_noise}"
        )
    vocab = {k: tuple(v) for k, v in (vocabulary or answers_by_kind(shard)).items()}
    rng = np.random.default_rng(seed)
    chosen, rejected = [], []
    for kind, answer in zip(shard["kind"], shard["answer"], strict=True):
        gold = normalize_answer(answer)
        wrong = [a for a in vocab.get(kind, ()) if a != gold]
        if not wrong:
            raise DataError(
                f"kind {kind!r} has no answer other than {gold!r} in the vocabulary: cannot build a pair"
            )
        bad = wrong[int(rng.integers(len(wrong)))]
        flip = rng.random() < label_noise
        chosen.append(bad if flip else gold)
        rejected.append(gold if flip else bad)
    pairs = shard.remove_columns("answer").add_column("chosen", chosen).add_column("rejected", rejected)
    return pairs.select_columns(list(PAIR_FEATURES)).cast(PAIR_FEATURES)
