"""The LoRA VLM reward model: LoRA (peft) on a VLM's text attention, a value head on the last token.

Shapes: image patches (B, P, D) (every image is resized to the same size, so P is fixed), token ids and
attention masks (B, K, T), right-padded, with K = 2 for a pair (chosen, rejected) and K = 1 for scoring.
The forward encodes the B images once (the vision tower is frozen) and runs K passes of batch B (prompt +
answer k, given the image features) through the text model (when scoring, without gradients, one pass
of batch B·K instead: the same numbers, faster); Opacus' hooks append
one activation per pass and add the per-row gradients of both passes, so row i's ``grad_sample`` is the
exact gradient of pair i (a test checks it against per-pair autograd). Ghost clipping would compute one
norm per pass and add norms, not gradients, so this model trains with ``grad_sample_mode="hooks"``.
The vision tower and the base weights are frozen; only the LoRA matrices and the value head train.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import datasets
import torch
from peft import LoraConfig, inject_adapter_in_model
from torch import nn
from torch.utils.data import TensorDataset

from secure_mor.models.factory import Vlm
from secure_mor.models.prompts import vqa_prompt
from secure_mor.models.tokenizer import EOS

TEXT_ATTENTION = r".*language_model.*\.self_attn\.(q_proj|k_proj|v_proj|o_proj)"


def add_lora(backbone: nn.Module, rank: int) -> nn.Module:
    """Freeze ``backbone`` and inject LoRA adapters into its text attention projections (in place)."""
    for parameter in backbone.parameters():
        parameter.requires_grad_(False)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=TEXT_ATTENTION)
    model = inject_adapter_in_model(config, backbone)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_("lora_" in name)
    return model


class LoraVlmRewardModel(nn.Module):
    """r = value_head(h_last) of a LoRA-adapted VLM backbone: (B, P, D), (B, K, T), (B, K, T) → (B, K)."""

    def __init__(self, vlm: Vlm, rank: int) -> None:
        super().__init__()
        model: Any = vlm.model
        self.backbone: Any = add_lora(model.model, rank)  # Qwen2VLModel: vision + text, no LM head
        self.value_head = nn.Linear(model.config.text_config.hidden_size, 1)
        self.image_token_id: int = vlm.processor.image_token_id
        self.grid: torch.Tensor = torch.zeros(1, 3, dtype=torch.long)  # (1, 3): t, h, w of every image

    def forward(self, patches: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Rewards (B, K)."""
        batch = patches.shape[0]
        flat = patches.reshape(-1, patches.shape[-1])  # (B·P, D)
        grid = self.grid.expand(batch, 3).contiguous()
        with torch.no_grad():  # the frozen vision tower, once for the K passes
            features = self.backbone.get_image_features(flat, grid, return_dict=True)
        if not torch.is_grad_enabled():  # scoring: the K passes as one batch of B·K (Opacus is not here)
            return self._one_pass(features, ids, mask)
        out = []
        for k in range(ids.shape[1]):
            hidden = self.backbone(
                input_ids=ids[:, k],
                attention_mask=mask[:, k],
                image_grid_thw=grid,
                mm_token_type_ids=(ids[:, k] == self.image_token_id).int(),
                mm_encoder_outputs={"image": features},
            ).last_hidden_state  # (B, T, H)
            last = mask[:, k].sum(dim=1) - 1  # (B,)
            h = hidden[torch.arange(batch), last]  # (B, H)
            out.append(self.value_head(h).squeeze(-1))  # (B,)
        return torch.stack(out, dim=1)

    def _one_pass(self, features: Any, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Rewards (B, K) from one text-model pass over the B·K sequences, each image's features repeated."""
        batch, k = ids.shape[:2]
        hidden = features.last_hidden_state
        repeated = type(features)(
            last_hidden_state=hidden.reshape(batch, -1, hidden.shape[-1])
            .repeat_interleave(k, dim=0)
            .reshape(-1, hidden.shape[-1]),
            pooler_output=tuple(image for image in features.pooler_output for _ in range(k)),
        )
        flat_ids, flat_mask = ids.reshape(batch * k, -1), mask.reshape(batch * k, -1)
        hidden_states = self.backbone(
            input_ids=flat_ids,
            attention_mask=flat_mask,
            image_grid_thw=self.grid.expand(batch * k, 3).contiguous(),
            mm_token_type_ids=(flat_ids == self.image_token_id).int(),
            mm_encoder_outputs={"image": repeated},
        ).last_hidden_state  # (B·K, T, H)
        last = flat_mask.sum(dim=1) - 1
        h = hidden_states[torch.arange(batch * k), last]
        rewards: torch.Tensor = self.value_head(h).squeeze(-1).reshape(batch, k)
        return rewards


class LoraVlmEncoder:
    """Turns pairs or rollouts into the LoRA VLM model's tensors (prompt + answer + EOS per answer)."""

    def __init__(self, processor: Any, model: LoraVlmRewardModel) -> None:
        self.processor = processor
        self.model = model
        self.pad_id: int = processor.tokenizer.pad_token_id

    def rows(
        self, images: Sequence[Any], questions: Sequence[str], answers: Sequence[Sequence[str]]
    ) -> tuple[torch.Tensor, ...]:
        """(N, P, D) patches, (N, K, T) ids and masks."""
        processor, merge = self.processor, self.processor.image_processor.merge_size**2
        patches, grid = [], None
        for image in images:
            encoded = processor.image_processor(images=[image.convert("RGB")], return_tensors="pt")
            patches.append(encoded["pixel_values"])
            grid = encoded["image_grid_thw"]
        if grid is None:
            raise ValueError("no images to encode")
        self.model.grid = grid.clone()
        tokens = int(grid.prod()) // merge
        sequences = []
        for question, row in zip(questions, answers, strict=True):
            prompt = vqa_prompt(processor, question).replace(
                processor.image_token, processor.image_token * tokens
            )
            texts = [prompt + answer + EOS for answer in row]
            sequences.append(processor.tokenizer(texts, add_special_tokens=False)["input_ids"])
        width = max(len(s) for row in sequences for s in row)
        k = len(sequences[0])
        ids = torch.full((len(sequences), k, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), k, width), dtype=torch.long)
        for i, row in enumerate(sequences):
            for j, seq in enumerate(row):
                ids[i, j, : len(seq)] = torch.tensor(seq)
                mask[i, j, : len(seq)] = 1
        return torch.stack(patches), ids, mask

    def pairs(self, pairs: datasets.Dataset) -> TensorDataset:
        """A dataset of one row per preference pair (answers: chosen, rejected)."""
        answers = list(zip(pairs["chosen"], pairs["rejected"], strict=True))
        return TensorDataset(*self.rows(pairs["image"], pairs["question"], answers))
