"""The chat messages a VQA example becomes, shared by pretraining, evaluation and GRPO prompts."""

from __future__ import annotations

from typing import Any


def vqa_messages(question: str) -> list[dict[str, Any]]:
    """A single user turn: the image, then the question (TRL's conversational format)."""
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]


def vqa_prompt(processor: Any, question: str) -> str:
    """The prompt text for ``question``, ending where the assistant's answer starts."""
    text: str = processor.apply_chat_template(
        vqa_messages(question), add_generation_prompt=True, tokenize=False
    )
    return text
