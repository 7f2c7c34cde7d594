"""Vision-language models: the tiny Qwen2-VL built offline, loading of any HF VLM, pretraining, eval."""

from secure_mor.models.evaluate import EvalResult, KindScore, TextOnlyBaseline, evaluate_vlm
from secure_mor.models.factory import Vlm, build_tiny_vlm, load_vlm, save_vlm
from secure_mor.models.presets import PRESETS, VlmPreset, get_preset
from secure_mor.models.pretrain import BaseConfig, BasePretrainer, PretrainConfig, PretrainResult

__all__ = [
    "PRESETS",
    "BaseConfig",
    "BasePretrainer",
    "EvalResult",
    "KindScore",
    "PretrainConfig",
    "PretrainResult",
    "TextOnlyBaseline",
    "Vlm",
    "VlmPreset",
    "build_tiny_vlm",
    "evaluate_vlm",
    "get_preset",
    "load_vlm",
    "save_vlm",
]
