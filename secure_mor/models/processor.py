"""An image-only Qwen2-VL processor: the stock one needs torchvision for its video processor.

``ImageOnlyQwen2VLProcessor`` keeps Qwen2-VL's text and image handling (image placeholder expansion,
``image_grid_thw``) and simply has no video processor, so it builds, saves and loads on CPU torch
without torchvision (whose PyPI wheel is a CUDA build that breaks CPU torch).
"""

from __future__ import annotations

from typing import Any

from transformers import Qwen2VLProcessor
from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil


class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
    """Qwen2-VL processor with an image processor and a tokenizer, and no video processor."""

    def __init__(
        self,
        image_processor: Qwen2VLImageProcessorPil | None = None,
        tokenizer: Any = None,
        chat_template: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(  # type: ignore[no-untyped-call]
            image_processor, tokenizer, None, chat_template=chat_template, **kwargs
        )
