"""Supervised batches for the tiny Qwen2-VL: images encoded once, prompts tokenised once.

``SftBatcher`` precomputes each image's patches (one call of the image processor per image, not per
question) and each example's token ids, then assembles right-padded batches with answer-only labels.
The result equals what the processor would give for the same texts and images (a test checks it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import datasets
import torch

from secure_mor.models.prompts import vqa_prompt
from secure_mor.models.tokenizer import EOS

IGNORE = -100


class SftBatcher:
    """Turns rows of a VQA dataset into model inputs with labels on the answer tokens only."""

    def __init__(self, processor: Any, dataset: datasets.Dataset) -> None:
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.image_token_id: int = processor.image_token_id
        self.pad_id: int = self.tokenizer.pad_token_id
        image_ids = dataset["image_id"]
        self._image_row: dict[str, int] = {}
        for row, image_id in enumerate(image_ids):
            self._image_row.setdefault(image_id, row)
        images = dataset.select(list(self._image_row.values()))["image"]
        self._pixels: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for image_id, image in zip(self._image_row, images, strict=True):
            encoded = processor.image_processor(images=[image], return_tensors="pt")
            self._pixels[image_id] = (encoded["pixel_values"], encoded["image_grid_thw"])
        self._image_of = list(image_ids)
        merge = processor.image_processor.merge_size**2
        prompts = [
            vqa_prompt(processor, q).replace(
                processor.image_token, processor.image_token * (int(self._pixels[i][1].prod()) // merge)
            )
            for q, i in zip(dataset["question"], image_ids, strict=True)
        ]
        encode = self.tokenizer
        self._prompt_ids: list[list[int]] = encode(prompts, add_special_tokens=False)["input_ids"]
        answers = [a + EOS for a in dataset["answer"]]
        self._answer_ids: list[list[int]] = encode(answers, add_special_tokens=False)["input_ids"]

    def batch(self, rows: Sequence[int]) -> dict[str, torch.Tensor]:
        """Model inputs for ``rows``: (B, T) ids, mask, mm types and labels, plus the images' patches."""
        sequences = [self._prompt_ids[r] + self._answer_ids[r] for r in rows]
        width = max(len(s) for s in sequences)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for b, (r, seq) in enumerate(zip(rows, sequences, strict=True)):
            input_ids[b, : len(seq)] = torch.tensor(seq)
            attention_mask[b, : len(seq)] = 1
            start = len(self._prompt_ids[r])
            labels[b, start : len(seq)] = torch.tensor(self._answer_ids[r])
        pixels = [self._pixels[self._image_of[r]] for r in rows]
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "mm_token_type_ids": (input_ids == self.image_token_id).int(),
            "labels": labels,
            "pixel_values": torch.cat([p for p, _ in pixels]),
            "image_grid_thw": torch.cat([g for _, g in pixels]),
        }
