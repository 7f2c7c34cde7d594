"""Reward functions handed to TRL: the gold reward (an upper bound that bypasses clients)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from secure_mor.data.schema import normalize_answer


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a string, or a list of chat messages (conversational prompts)."""
    if isinstance(completion, str):
        return completion
    return "".join(str(message.get("content", "")) for message in completion)


class GoldReward:
    """1 for an answer equal to the gold answer after normalisation, else 0 (needs the ``answer`` column)."""

    __name__ = "gold"

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        """Score each completion against the ``answer`` of its prompt."""
        answers = columns["answer"]
        return [
            float(normalize_answer(completion_text(c)) == normalize_answer(a))
            for c, a in zip(completions, answers, strict=True)
        ]
