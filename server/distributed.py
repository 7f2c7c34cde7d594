"""Federated rewards under several training processes (``torchrun`` / ``accelerate launch``).

TRL calls the reward function in every process on that process's share of the rollouts, but the
clients' streams, the key holder channel and the step counter live in the main process only. So every
process sends its rollouts to the main one (``gather_object``), the main process scores the whole
global batch as ONE secure step (one step id, one decryption), and the rewards go back to each
process (``broadcast_object_list``). With one process this is a plain call.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from accelerate import PartialState
from accelerate.utils import broadcast_object_list, gather_object
from PIL import Image

from secure_mor.server.grpo import RewardFunc


class MainProcessReward:
    """Wraps a reward function that can only run in the main process (``inner`` is None elsewhere)."""

    def __init__(self, inner: RewardFunc | None) -> None:
        self.inner = inner
        self.__name__ = getattr(inner, "__name__", "federated")

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any
    ) -> list[float | None]:
        """Score this process's rollouts through the main process."""
        state = PartialState()  # set up by the trainer by the time rewards are asked for
        if state.num_processes == 1:
            assert self.inner is not None
            return list(self.inner(prompts, completions, **columns))
        local = {
            "completions": list(completions),
            "question": list(columns["question"]),
            "image_id": list(columns["image_id"]),
            "image": [_png(image) for image in columns["image"]],
        }
        shares = gather_object([local])  # every process's rollouts, in process order
        result: list[Any] = [None]
        if state.is_main_process:
            assert self.inner is not None, "the main process must hold the federated reward"
            merged = {key: [item for share in shares for item in share[key]] for key in local}
            merged["image"] = [Image.open(io.BytesIO(b)).convert("RGB") for b in merged["image"]]
            rewards = list(
                self.inner([None] * len(merged["completions"]), merged.pop("completions"), **merged)
            )
            bounds = [0]
            for share in shares:
                bounds.append(bounds[-1] + len(share["completions"]))
            result = [[rewards[bounds[i] : bounds[i + 1]] for i in range(len(shares))]]
        broadcast_object_list(result, from_process=0)
        mine: list[float | None] = result[0][state.process_index]
        return mine


def _png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
