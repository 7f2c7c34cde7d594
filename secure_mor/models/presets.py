"""Size presets of the tiny Qwen2-VL that serves as the CPU-scale visual foundation model."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from secure_mor.errors import ConfigError


@dataclass(frozen=True)
class VlmPreset:
    """Architecture of a locally built Qwen2-VL; ``mrope_section`` must sum to ``head_dim / 2``."""

    hidden_size: int
    layers: int
    heads: int
    kv_heads: int
    intermediate_size: int
    vision_depth: int
    vision_embed_dim: int
    vision_heads: int
    patch_size: int
    image_size: int
    vocab_size: int
    mrope_section: tuple[int, int, int]

    @property
    def head_dim(self) -> int:
        """Per-head width of the text model's attention."""
        return self.hidden_size // self.heads

    @property
    def image_tokens(self) -> int:
        """Image tokens per (square) image after the 2×2 patch merge."""
        return (self.image_size // self.patch_size) ** 2 // 4

    def __post_init__(self) -> None:
        if sum(self.mrope_section) * 2 != self.head_dim:
            raise ConfigError(
                f"mrope_section {self.mrope_section} sums to {sum(self.mrope_section)}; "
                f"it must sum to head_dim/2 = {self.head_dim // 2}"
            )
        if self.image_size % (2 * self.patch_size):
            raise ConfigError(
                f"image_size {self.image_size} must be a multiple of 2 × patch_size = {2 * self.patch_size}"
            )


PRESETS: MappingProxyType[str, VlmPreset] = MappingProxyType(
    {
        # 64×64 images with 8-px patches → 16 image tokens (14-px patches would leave only 4).
        "tiny": VlmPreset(
            hidden_size=128,
            layers=2,
            heads=4,
            kv_heads=2,
            intermediate_size=256,
            vision_depth=2,
            vision_embed_dim=64,
            vision_heads=4,
            patch_size=8,
            image_size=64,
            vocab_size=1024,
            mrope_section=(4, 6, 6),
        ),
        "small": VlmPreset(
            hidden_size=256,
            layers=4,
            heads=8,
            kv_heads=4,
            intermediate_size=512,
            vision_depth=4,
            vision_embed_dim=128,
            vision_heads=4,
            patch_size=8,
            image_size=64,
            vocab_size=2048,
            mrope_section=(4, 6, 6),
        ),
    }
)


def get_preset(name: str) -> VlmPreset:
    """The preset called ``name``, or a ``ConfigError`` listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown model preset {name!r}; expected one of: {', '.join(PRESETS)}") from None
