"""Build the tiny Qwen2-VL base offline, and save / load any Hugging Face VLM with its processor.

``build_tiny_vlm`` makes a randomly initialised Qwen2-VL from a preset, a tokenizer trained on the
dataset's text and an image-only processor; nothing is downloaded. ``load_vlm`` loads what
``save_vlm`` wrote, or any VLM that transformers' ``AutoModelForImageTextToText`` knows (Qwen2-VL,
Qwen2.5-VL, SmolVLM, LLaVA-NeXT, Gemma 3, …) from a folder or, where the machine is online, a hub id.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor, PreTrainedModel, Qwen2VLConfig
from transformers import Qwen2VLForConditionalGeneration as Qwen2VL
from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

from secure_mor.errors import ModelError
from secure_mor.models.presets import VlmPreset
from secure_mor.models.processor import ImageOnlyQwen2VLProcessor
from secure_mor.models.tokenizer import (
    EOS,
    IMAGE_PAD,
    PAD,
    VIDEO_PAD,
    VISION_END,
    VISION_START,
    train_tokenizer,
)


@dataclass(frozen=True)
class Vlm:
    """A vision-language model with the processor that prepares its inputs."""

    model: PreTrainedModel
    processor: Any

    @property
    def num_parameters(self) -> int:
        """Number of parameters of the model."""
        return sum(p.numel() for p in self.model.parameters())


def build_tiny_vlm(preset: VlmPreset, texts: Iterable[str], *, seed: int = 0) -> Vlm:
    """A randomly initialised Qwen2-VL of ``preset``'s size, with a tokenizer trained on ``texts``."""
    tokenizer = train_tokenizer(texts, vocab_size=preset.vocab_size)
    pixels = preset.image_size * preset.image_size
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=preset.patch_size,
        merge_size=2,
        temporal_patch_size=2,
        # Every image is resized to image_size × image_size, so all images give the same token count.
        size={"shortest_edge": pixels, "longest_edge": pixels},
    )
    processor = ImageOnlyQwen2VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=tokenizer.chat_template
    )

    def token(name: str) -> int:
        found = tokenizer.convert_tokens_to_ids(name)
        if not isinstance(found, int):
            raise ModelError(f"the tokenizer has no single id for special token {name}")
        return found

    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": preset.hidden_size,
            "intermediate_size": preset.intermediate_size,
            "num_hidden_layers": preset.layers,
            "num_attention_heads": preset.heads,
            "num_key_value_heads": preset.kv_heads,
            "max_position_embeddings": 1024,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": list(preset.mrope_section),
            },
            "bos_token_id": None,
            "eos_token_id": token(EOS),
            "pad_token_id": token(PAD),
            "tie_word_embeddings": True,
        },
        vision_config={
            "depth": preset.vision_depth,
            "embed_dim": preset.vision_embed_dim,
            "hidden_size": preset.hidden_size,
            "num_heads": preset.vision_heads,
            "mlp_ratio": 2,
            "patch_size": preset.patch_size,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=token(IMAGE_PAD),
        video_token_id=token(VIDEO_PAD),
        vision_start_token_id=token(VISION_START),
        vision_end_token_id=token(VISION_END),
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Qwen2VL(config)
    model.generation_config.pad_token_id = token(PAD)
    model.generation_config.eos_token_id = token(EOS)
    return Vlm(model=model, processor=processor)


def save_vlm(vlm: Vlm, path: str | Path) -> Path:
    """Write the model and its processor to ``path`` (``save_pretrained`` format) and return it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        vlm.model.save_pretrained(path)
        vlm.processor.save_pretrained(path)
    except OSError as error:
        raise ModelError(f"cannot save the model to {path}: {error}") from None
    return path


def load_vlm(name_or_path: str | Path, *, dtype: torch.dtype = torch.float32) -> Vlm:
    """Load a VLM and its processor from a folder (as ``save_vlm`` writes) or a hub id."""
    source = str(name_or_path)
    local = Path(source).expanduser()
    if local.exists() and not (local / "config.json").is_file():
        raise ModelError(f"{local}: not a model folder (no config.json); expected a save_pretrained folder")
    if not local.exists() and (source.startswith((".", "/", "~")) or source.count("/") != 1):
        raise ModelError(f"model not found: {source} (no such folder, and not a hub id)")
    try:
        model = AutoModelForImageTextToText.from_pretrained(source, dtype=dtype)
        processor = _load_processor(source, local)
    except (OSError, ValueError, KeyError) as error:
        raise ModelError(f"cannot load a vision-language model from {source}: {error}") from None
    model.eval()
    return Vlm(model=model, processor=processor)


def _load_processor(source: str, local: Path) -> Any:
    config_file = local / "processor_config.json"
    if config_file.is_file():
        processor_class = json.loads(config_file.read_text()).get("processor_class")
        if processor_class == ImageOnlyQwen2VLProcessor.__name__:
            return ImageOnlyQwen2VLProcessor.from_pretrained(source)
    return AutoProcessor.from_pretrained(source)
