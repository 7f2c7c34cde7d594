"""``BasePretrainer``: supervised pretraining of the tiny Qwen2-VL on the foundation split only.

At CPU scale the "visual foundation model" is made here. Questions are sampled with the kinds balanced
(easy-VQA is 74 % yes/no; sampling as it comes left shape questions at chance when measured), with AdamW
and a linear-warmup cosine schedule. The budget is a number of steps, optionally cut by a time limit.
Client shards are never seen: the split is made by ``secure_mor.data`` and only ``foundation`` is used.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from secure_mor import __version__
from secure_mor.config import help_field, nested, require
from secure_mor.data import DataConfig, load_splits
from secure_mor.models.factory import Vlm, build_tiny_vlm, save_vlm
from secure_mor.models.presets import PRESETS, get_preset
from secure_mor.models.sft import SftBatcher

MANIFEST = "secure_mor_base.json"


@dataclass(frozen=True)
class PretrainConfig:
    """Hyper-parameters of base pretraining (the ``[pretrain]`` table)."""

    preset: str = help_field("tiny", f"Model size preset: {', '.join(PRESETS)}.")
    steps: int = help_field(1500, "Optimizer steps (the default leaves headroom for alignment).")
    batch_size: int = help_field(64, "Examples per step.")
    learning_rate: float = help_field(2e-3, "Peak AdamW learning rate.")
    warmup_steps: int = help_field(100, "Linear warm-up steps before the cosine decay.")
    weight_decay: float = help_field(0.01, "AdamW weight decay.")
    kind_balanced: bool = help_field(True, "Sample question kinds uniformly (needed for shape questions).")
    max_minutes: float | None = help_field(None, "Stop after this many minutes even if steps remain.")
    seed: int = help_field(0, "Seed of initialisation and sampling.")
    threads: int = help_field(0, "torch CPU threads; 0 = all cores.")

    def __post_init__(self) -> None:
        get_preset(self.preset)
        require(self.steps >= 1, "steps", f"expected an integer ≥ 1, found {self.steps}")
        require(self.batch_size >= 1, "batch_size", f"expected an integer ≥ 1, found {self.batch_size}")
        require(self.learning_rate > 0, "learning_rate", f"expected a number > 0, found {self.learning_rate}")
        require(self.warmup_steps >= 0, "warmup_steps", f"expected an integer ≥ 0, found {self.warmup_steps}")
        require(
            self.max_minutes is None or self.max_minutes > 0,
            "max_minutes",
            f"expected a number > 0, found {self.max_minutes}",
        )


@dataclass(frozen=True)
class BaseConfig:
    """Everything ``secure-mor base pretrain`` reads from its TOML file."""

    data: DataConfig = nested(DataConfig, "Where the VQA data comes from and how it is split.")
    pretrain: PretrainConfig = nested(PretrainConfig, "Pretraining hyper-parameters.")


@dataclass(frozen=True)
class PretrainResult:
    """What a pretraining run did: where the model is, how long it took, how far the loss fell."""

    path: Path
    steps: int
    examples: int
    seconds: float
    final_loss: float
    parameters: int


ProgressFn = Callable[[int, int, float], None]
"""Called after each step with (step, total steps, loss)."""


class BasePretrainer:
    """Builds the tiny VLM and trains it on the foundation split; ``run`` saves it with a manifest."""

    def __init__(self, config: BaseConfig) -> None:
        self.config = config

    def run(self, out: Path, progress: ProgressFn | None = None, foundation: Any = None) -> PretrainResult:
        """Pretrain, save the model and processor to ``out`` and return what happened.

        ``foundation`` is the foundation split of ``config.data`` when the caller has it loaded already.
        """
        cfg = self.config.pretrain
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if foundation is None:
            foundation = load_splits(self.config.data).foundation
        vlm = build_tiny_vlm(
            get_preset(cfg.preset), [*foundation["question"], *foundation["answer"]], seed=cfg.seed
        )
        batcher = SftBatcher(vlm.processor, foundation)
        sampler = _RowSampler(list(foundation["kind"]), balanced=cfg.kind_balanced, seed=cfg.seed)
        started = time.monotonic()
        steps, loss = self._train(vlm, batcher, sampler, started, progress)
        seconds = time.monotonic() - started
        save_vlm(vlm, out)
        result = PretrainResult(
            path=out,
            steps=steps,
            examples=steps * cfg.batch_size,
            seconds=seconds,
            final_loss=loss,
            parameters=vlm.num_parameters,
        )
        _write_manifest(out, self.config, result)
        return result

    def _train(
        self,
        vlm: Vlm,
        batcher: SftBatcher,
        sampler: _RowSampler,
        started: float,
        progress: ProgressFn | None,
    ) -> tuple[int, float]:
        cfg = self.config.pretrain
        model = vlm.model
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(cfg.warmup_steps, cfg.steps))
        smoothed = math.nan
        step = 0
        for step in range(1, cfg.steps + 1):
            loss = model(**batcher.batch(sampler.draw(cfg.batch_size))).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            smoothed = loss.item() if math.isnan(smoothed) else 0.95 * smoothed + 0.05 * loss.item()
            if progress is not None:
                progress(step, cfg.steps, smoothed)
            if cfg.max_minutes is not None and time.monotonic() - started > 60 * cfg.max_minutes:
                break
        model.eval()
        return step, smoothed


class _RowSampler:
    """Draws rows with replacement, either as they come or with the question kinds equally likely."""

    def __init__(self, kinds: list[str], *, balanced: bool, seed: int) -> None:
        self._rng = np.random.default_rng(seed)
        if balanced:
            groups: dict[str, list[int]] = {}
            for row, kind in enumerate(kinds):
                groups.setdefault(kind, []).append(row)
            self._groups = [np.array(rows) for _, rows in sorted(groups.items())]
        else:
            self._groups = [np.arange(len(kinds))]

    def draw(self, n: int) -> list[int]:
        which = self._rng.integers(len(self._groups), size=n)
        return [int(self._rng.choice(self._groups[g])) for g in which]


def _warmup_cosine(warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _write_manifest(out: Path, config: BaseConfig, result: PretrainResult) -> None:
    manifest = {
        "secure_mor_version": __version__,
        "config": json.loads(json.dumps(asdict(config), default=str)),
        "result": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(result).items()},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def cached_base(config: BaseConfig, cache: Path, foundation: Any, progress: ProgressFn | None = None) -> Path:
    """The base that ``config`` makes, reused from ``cache`` when a run already made it.

    The key is the pretraining recipe and a content fingerprint of the ``foundation`` split (the rows
    and image bytes it learns from, and that its tokenizer is trained on), never the data's path: a base
    made from other data, another split or other hyper-parameters is never reused.
    """
    from secure_mor.data import dataset_fingerprint

    recipe = {"pretrain": asdict(config.pretrain), "foundation": dataset_fingerprint(foundation)}
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()
    folder = cache.expanduser() / key[:16]
    if not (folder / MANIFEST).exists():
        BasePretrainer(config).run(folder, progress=progress, foundation=foundation)
    return folder
