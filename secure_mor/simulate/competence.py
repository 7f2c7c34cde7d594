"""What each client's reward model knows, per question kind: top-1 ranking accuracy of the gold answer.

For test questions of each kind, every answer that kind takes in the public splits is scored by the
model; the model is right when the gold answer gets the highest reward. A K × kinds matrix: the
observable mechanism MoR relies on (a client should know its own kind; the router should follow it).
The test split is used for evaluation only, as here; nothing is trained on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from secure_mor.data import answers_by_kind, normalize_answer
from secure_mor.models.evaluate import balanced_rows

QUESTIONS_PER_KIND = 50


def ranking_accuracy(
    models: Mapping[str, Any], splits: Any, per_kind: int = QUESTIONS_PER_KIND
) -> dict[str, dict[str, float]]:
    """Top-1 accuracy of each model (by client name) on ``per_kind`` test questions of each kind."""
    vocabulary = answers_by_kind(splits.public)
    test = splits.test
    rows = balanced_rows(test["kind"], per_kind * len(set(test["kind"])), seed=0)
    subset = test.select(rows)
    out: dict[str, dict[str, float]] = {name: {} for name in models}
    for kind in sorted(set(subset["kind"]) & set(vocabulary)):
        answers = list(vocabulary[kind])
        if len(answers) < 2:
            continue
        part = subset.select([i for i, k in enumerate(subset["kind"]) if k == kind])
        images, questions = list(part["image"]), list(part["question"])
        gold = [answers.index(g) if g in answers else -1 for g in map(normalize_answer, part["answer"])]
        for name, model in models.items():
            rewards = model.rewards(images, questions, [answers] * len(questions))  # (n, A)
            right = np.argmax(rewards, axis=1) == np.array(gold)
            out[name][kind] = round(float(right.mean()), 4)
    return out
