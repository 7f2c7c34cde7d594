"""Exact-match VQA accuracy per question kind, beside the text-only baseline.

``evaluate_vlm`` answers test questions greedily and compares normalised answers. The text-only
baseline answers each question string with its most common training answer, ignoring the image: on
easy-VQA it scores 84 % on yes/no questions, so an overall figure alone hides what the image taught.
Both are reported per kind and question-weighted overall.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import datasets
import numpy as np
import torch

from secure_mor.data.schema import normalize_answer
from secure_mor.models.factory import Vlm
from secure_mor.models.prompts import vqa_prompt
from secure_mor.models.sft import IGNORE, SftBatcher

OVERALL = "overall"


@dataclass(frozen=True)
class KindScore:
    """Accuracy on one question kind (or overall)."""

    questions: int
    correct: int
    baseline_correct: int
    gold_probability: float = math.nan  # Σ over questions of π(gold answer), sampling at temperature 1

    @property
    def accuracy(self) -> float:
        """Share of questions answered exactly right."""
        return self.correct / self.questions if self.questions else float("nan")

    @property
    def expected_accuracy(self) -> float:
        """Mean probability that an answer sampled at temperature 1 is the gold one (what GRPO raises)."""
        return self.gold_probability / self.questions if self.questions else float("nan")

    @property
    def baseline_accuracy(self) -> float:
        """Share the text-only baseline gets right on the same questions."""
        return self.baseline_correct / self.questions if self.questions else float("nan")


@dataclass(frozen=True)
class EvalResult:
    """Accuracy per kind and overall, with the text-only baseline."""

    scores: MappingProxyType[str, KindScore]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary: per kind questions, accuracy and baseline accuracy."""
        return {
            kind: {
                "questions": s.questions,
                "accuracy": round(s.accuracy, 4),
                "expected_accuracy": round(s.expected_accuracy, 4),
                "text_only_baseline": round(s.baseline_accuracy, 4),
            }
            for kind, s in self.scores.items()
        }


class TextOnlyBaseline:
    """Answers a question with the answer it most often had in ``train``; unseen questions get the mode."""

    def __init__(self, train: datasets.Dataset) -> None:
        per_question: dict[str, Counter[str]] = defaultdict(Counter)
        for question, answer in zip(train["question"], train["answer"], strict=True):
            per_question[normalize_answer(question)][normalize_answer(answer)] += 1
        self._answers = {q: c.most_common(1)[0][0] for q, c in per_question.items()}
        overall = Counter(normalize_answer(a) for a in train["answer"])
        self._fallback = overall.most_common(1)[0][0] if overall else ""

    def answer(self, question: str) -> str:
        """The baseline's answer to ``question``."""
        return self._answers.get(normalize_answer(question), self._fallback)


def sample_rows(size: int, limit: int | None, seed: int) -> list[int]:
    """A seeded random subset of ``limit`` row indices (all rows, in order, without a limit)."""
    if limit is None or limit >= size:
        return list(range(size))
    return sorted(np.random.default_rng(seed).choice(size, size=limit, replace=False).tolist())


def generate_answers(
    vlm: Vlm, images: Sequence[Any], questions: Sequence[str], max_new_tokens: int = 8
) -> list[str]:
    """Greedy answers of ``vlm`` to a batch of (image, question) pairs."""
    processor = vlm.processor
    prompts = [vqa_prompt(processor, q) for q in questions]
    inputs = processor(
        images=list(images), text=prompts, return_tensors="pt", padding=True, padding_side="left"
    )
    model: Any = vlm.model  # PreTrainedModel.generate is typed as a tensor attribute in transformers
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    answers: list[str] = processor.batch_decode(
        output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True
    )
    return answers


def evaluate_vlm(
    vlm: Vlm,
    test: datasets.Dataset,
    baseline: TextOnlyBaseline,
    *,
    batch_size: int = 64,
    progress: Callable[[int], None] | None = None,
) -> EvalResult:
    """Accuracy of ``vlm`` on every row of ``test``, per kind and overall.

    Two measures: exact match of the greedy answer (``accuracy``), and the probability the policy gives
    the gold answer when sampling at temperature 1 (``expected_accuracy``) — the quantity GRPO's
    sampled rewards raise, which moves long before the greedy answer flips.
    """
    tallies: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0, 0.0])
    vlm.model.eval()
    batcher = SftBatcher(vlm.processor, test)
    for start in range(0, len(test), batch_size):
        batch = test[start : start + batch_size]
        answers = generate_answers(vlm, batch["image"], batch["question"])
        gold_probability = answer_probabilities(vlm, batcher, range(start, start + len(answers)))
        for question, gold, kind, answer, p in zip(
            batch["question"], batch["answer"], batch["kind"], answers, gold_probability, strict=True
        ):
            gold_norm = normalize_answer(gold)
            for key in (kind, OVERALL):
                tallies[key][0] += 1
                tallies[key][1] += normalize_answer(answer) == gold_norm
                tallies[key][2] += baseline.answer(question) == gold_norm
                tallies[key][3] += p
        if progress is not None:
            progress(len(batch["question"]))
    order = [*sorted(k for k in tallies if k != OVERALL), OVERALL]
    scores: dict[str, KindScore] = {}
    for k in order:
        questions, correct, baseline_correct, probability_sum = tallies[k]
        scores[k] = KindScore(int(questions), int(correct), int(baseline_correct), probability_sum)
    return EvalResult(scores=MappingProxyType(scores))


def answer_probabilities(vlm: Vlm, batcher: SftBatcher, rows: Sequence[int]) -> list[float]:
    """π(gold answer, then end of turn | image, question) for ``rows``: its tokens' probabilities."""
    inputs = batcher.batch(list(rows))
    labels = inputs.pop("labels")
    model: Any = vlm.model
    with torch.no_grad():
        logits = model(**inputs).logits[:, :-1].float()
    targets = labels[:, 1:]
    mask = targets != IGNORE
    logp = torch.log_softmax(logits, dim=-1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return torch.exp((logp * mask).sum(dim=1)).tolist()


def balanced_rows(kinds: Sequence[str], limit: int, seed: int) -> list[int]:
    """A seeded subset of ``limit`` row indices with as many rows of each kind as it has (sorted).

    ``limit`` is split evenly over the kinds (the first kinds in sorted order take the remainder); a kind
    with fewer rows than its share gives all it has.
    """
    labels = np.asarray(kinds)
    names = sorted(set(labels.tolist()))
    rng = np.random.default_rng(seed)
    rows: list[int] = []
    for i, kind in enumerate(names):
        share = limit // len(names) + (i < limit % len(names))
        members = np.flatnonzero(labels == kind)
        rows += rng.choice(members, size=min(share, len(members)), replace=False).tolist()
    return sorted(rows)


def evaluate_held_out(vlm: Vlm, splits: Any, limit: int, *, balanced: bool = False) -> EvalResult:
    """Accuracy on the same seeded ``limit`` test questions every run uses (baseline from the foundation).

    ``balanced`` takes the same number of questions of each kind instead of the test split's mix (three
    in four are yes/no), so that every kind's accuracy rests on enough questions.
    """
    rows = (
        balanced_rows(splits.test["kind"], limit, seed=0)
        if balanced
        else sample_rows(len(splits.test), limit, seed=0)
    )
    subset = splits.test.select(rows)
    return evaluate_vlm(vlm, subset, TextOnlyBaseline(splits.foundation))
