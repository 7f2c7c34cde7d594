"""The compact reward model: a small CNN over the image and hashed bag-of-words over question and answer.

Beside the CNN's pooled features the image also enters as a colour summary (per-channel mean, max and
min over all pixels): easy-VQA's shapes can be a few pixels wide, and the strided convolutions blur a
small brown shape into a red one; the channel minimum over a light background keeps its colour. And as
a geometry summary of the foreground (the pixels that differ from the border's median colour): how
much of its bounding box it fills, the box's aspect ratio and the foreground's share of the image —
classic shape descriptors, fixed and without parameters. A rectangle fills ~1.0 of its box, a circle
~0.8, a triangle ~0.55 (easy-VQA test images); the small CNN does not learn that under DP noise from a
shard of a few thousand pairs (held-out pairwise 0.51 at ε = 3), the descriptors make it a few weights.

Shapes: images (B, 3, S, S); question tokens (B, Tq); answer tokens (B, K, Ta) with K = 2 for a
preference pair (chosen, rejected) and K = 1 when scoring. One pair is ONE row of the batch: every
trainable layer sees the pair index as dimension 0, so Opacus clips per pair, never per answer. Each
layer is called once per forward (ghost clipping keeps one norm per layer call), and no ``Linear`` sees
more than three dimensions (Opacus' ghost norm for ``Linear`` handles 2-D and 3-D inputs only).

Words are hashed into ``buckets`` ids (CRC-32): the vocabulary is not learnt from private data.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from typing import Any

import datasets
import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

IMAGE_SIZE = 64
QUESTION_TOKENS = 16
ANSWER_TOKENS = 4
COLOUR_FEATURES = 9
"""The colour summary: mean, max and min of each of the 3 channels."""
GEOMETRY_FEATURES = 4
"""The geometry summary: box fill, its square, log aspect ratio, foreground share."""
FOREGROUND_THRESHOLD = 0.25
"""Summed absolute RGB difference (in [0, 3]) from the border's median beyond which a pixel is foreground."""
_WORD = re.compile(r"[a-z0-9]+")


def hash_tokens(text: str, buckets: int, length: int) -> list[int]:
    """Hashed word ids of ``text`` in [1, buckets), padded with 0 or cut to ``length``."""
    ids = [1 + zlib.crc32(w.encode()) % (buckets - 1) for w in _WORD.findall(text.lower())][:length]
    return ids + [0] * (length - len(ids))


def image_tensor(image: Any) -> torch.Tensor:
    """A PIL image as a (3, S, S) float tensor in [0, 1]."""
    array = np.asarray(image.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE)), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


class CompactEncoder:
    """Turns pairs or rollouts into the compact model's tensors."""

    def __init__(self, buckets: int) -> None:
        self.buckets = buckets

    def rows(
        self, images: Sequence[Any], questions: Sequence[str], answers: Sequence[Sequence[str]]
    ) -> tuple[torch.Tensor, ...]:
        """(N, 3, S, S) images, (N, Tq) question ids and (N, K, Ta) answer ids."""
        pixels = (
            torch.stack([image_tensor(im) for im in images])
            if images
            else torch.zeros(0, 3, IMAGE_SIZE, IMAGE_SIZE)
        )
        q = torch.tensor([hash_tokens(t, self.buckets, QUESTION_TOKENS) for t in questions], dtype=torch.long)
        a = torch.tensor(
            [[hash_tokens(t, self.buckets, ANSWER_TOKENS) for t in row] for row in answers], dtype=torch.long
        )
        return (
            pixels,
            q.reshape(len(questions), QUESTION_TOKENS),
            a.reshape(len(questions), -1, ANSWER_TOKENS),
        )

    def pairs(self, pairs: datasets.Dataset) -> TensorDataset:
        """A dataset of one row per preference pair (answers: chosen, rejected)."""
        answers = list(zip(pairs["chosen"], pairs["rejected"], strict=True))
        return TensorDataset(*self.rows(pairs["image"], pairs["question"], answers))


def geometry(images: torch.Tensor) -> torch.Tensor:
    """(B, GEOMETRY_FEATURES) descriptors of each image's foreground; zeros for an empty foreground."""
    border = torch.cat(
        [images[:, :, 0], images[:, :, -1], images[:, :, :, 0], images[:, :, :, -1]], dim=2
    )  # (B, 3, 4S)
    background = border.median(dim=2).values[:, :, None, None]  # (B, 3, 1, 1)
    foreground = ((images - background).abs().sum(dim=1) > FOREGROUND_THRESHOLD).float()  # (B, S, S)
    size = images.shape[-1]
    index = torch.arange(size, dtype=images.dtype)
    rows, cols = foreground.amax(dim=2), foreground.amax(dim=1)  # (B, S): any foreground in row / col

    def extent(any_: torch.Tensor) -> torch.Tensor:
        first = torch.where(any_ > 0, index, float(size)).amin(dim=1)
        last = torch.where(any_ > 0, index, -1.0).amax(dim=1)
        return (last - first + 1).clamp(min=0)

    height, width = extent(rows), extent(cols)
    area = foreground.sum(dim=(1, 2))
    fill = area / (height * width).clamp(min=1)
    aspect = torch.log((height.clamp(min=1)) / width.clamp(min=1))
    return torch.stack([fill, fill**2, aspect, area / size**2], dim=1)


def _masked_mean(embedded: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    mask = (ids > 0).unsqueeze(-1).to(embedded.dtype)  # (..., T, 1)
    return (embedded * mask).sum(dim=-2) / mask.sum(dim=-2).clamp(min=1.0)


class CompactRewardModel(nn.Module):
    """r(image, question, answer) ∈ R for K answers per row: (B, 3, S, S), (B, Tq), (B, K, Ta) → (B, K)."""

    def __init__(self, buckets: int = 4096, hidden: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(32, 32, kernel_size=3, stride=2, padding=1)
        self.image_proj = nn.Linear(32 * 4 + COLOUR_FEATURES + GEOMETRY_FEATURES, hidden)
        self.question_embed = nn.Embedding(buckets, hidden)
        self.answer_embed = nn.Embedding(buckets, hidden)
        self.context = nn.Linear(3 * hidden, hidden)
        self.answer_proj = nn.Linear(hidden, hidden)
        self.joint = nn.Linear(2 * hidden, hidden)
        self.head = nn.Linear(hidden, 1)
        self.act = nn.GELU()

    def freeze_encoders(self) -> None:
        """Stop training the convolutions and word embeddings (kept as pretrained on public data).

        What still trains is Linear layers only, whose ghost-clipping norms are cheap; Opacus' per-pair
        norm of an Embedding (an ``index_add`` per row) cost more than the rest of a DP step together.
        """
        for layer in (self.conv1, self.conv2, self.conv3, self.question_embed, self.answer_embed):
            for parameter in layer.parameters():
                parameter.requires_grad_(False)

    def forward(self, images: torch.Tensor, question: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
        """Rewards (B, K)."""
        centred = images * 4.0 - 2.0
        colours = torch.cat(
            [centred.mean(dim=(2, 3)), centred.amax(dim=(2, 3)), centred.amin(dim=(2, 3))], 1
        )  # (B, COLOUR_FEATURES)
        shape = geometry(images) * 4.0 - 2.0  # (B, GEOMETRY_FEATURES), on the colours' scale
        x = nn.functional.avg_pool2d(centred, 2)  # (B, 3, S/2, S/2)
        x = self.act(self.conv1(x))  # (B, 16, S/4, S/4)
        x = self.act(self.conv2(x))  # (B, 32, S/8, S/8)
        x = self.act(self.conv3(x))  # (B, 32, S/16, S/16)
        pooled = nn.functional.adaptive_max_pool2d(x, 2).flatten(1)  # (B, 128): coarse layout kept
        pooled = torch.cat([pooled, colours, shape], dim=1)  # (B, 128 + COLOUR + GEOMETRY FEATURES)
        img = self.act(self.image_proj(pooled))  # (B, H)
        q = _masked_mean(self.question_embed(question), question)  # (B, H)
        ctx = self.act(self.context(torch.cat([img, q, img * q], dim=-1)))  # (B, H)
        a = self.act(self.answer_proj(_masked_mean(self.answer_embed(answers), answers)))  # (B, K, H)
        match = (ctx.unsqueeze(1) * a).sum(dim=-1)  # (B, K): does the answer fit image and question?
        both = torch.cat([ctx.unsqueeze(1).expand(-1, a.shape[1], -1), a], dim=-1)  # (B, K, 2H)
        rewards: torch.Tensor = match + self.head(self.act(self.joint(both))).squeeze(-1)  # (B, K)
        return rewards
