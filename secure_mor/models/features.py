"""Prompt features φ(x): the frozen reference VLM's last hidden state at the prompt's final token.

The router reads these (docs/ARCHITECTURE.md, "The router"); they come from the frozen reference,
never from the policy being trained, so the routing of a prompt does not drift during GRPO. The final
token is where the model is about to answer, so its state carries what the question asks; a mean over
every position is dominated by the image tokens, which all prompts share in kind, and separated the
question kinds of a well-trained base less well (docs/ARCHITECTURE.md, "The router").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from secure_mor.models.factory import Vlm
from secure_mor.models.prompts import vqa_prompt


def prompt_features(
    vlm: Vlm, images: Sequence[Any], questions: Sequence[str], *, batch_size: int = 64
) -> np.ndarray:
    """(n, hidden) last-layer states of ``vlm`` at each prompt's last non-padding token, as float32."""
    if len(images) != len(questions):
        raise ValueError(f"{len(images)} images but {len(questions)} questions")
    model: Any = vlm.model
    out: list[np.ndarray] = []
    for start in range(0, len(questions), batch_size):
        prompts = [vqa_prompt(vlm.processor, q) for q in questions[start : start + batch_size]]
        inputs = vlm.processor(
            images=list(images[start : start + batch_size]), text=prompts, return_tensors="pt", padding=True
        )
        with torch.no_grad():
            hidden = model(**inputs, output_hidden_states=True).hidden_states[-1]  # (B, T, H)
        mask = inputs["attention_mask"]  # (B, T); works for left and right padding alike
        positions = torch.arange(mask.shape[1]).expand_as(mask)
        last = torch.where(mask.bool(), positions, -1).max(dim=1).values  # (B,)
        out.append(hidden[torch.arange(len(last)), last].float().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.text_config.hidden_size), np.float32)
