"""A client's reward model, whatever its architecture: build, score into [0, 1], calibrate, save, load.

``RewardModel`` wraps a module mapping a batch of rows with K candidate answers to rewards (B, K) and
the encoder that makes those rows from (image, question, answers). The temperature T is fitted so that
``sigmoid((r_c − r_r) / T)`` is the calibrated probability that the chosen answer wins on the client's
held-out pairs (Bradley–Terry), and the offset is the median midpoint (r_c + r_r) / 2 there. Fitting
two scalars changes no ranking (pairwise accuracy is unchanged).

The score of one answer a to (image, question) is, with ``candidates`` (the public answers of each
question kind, saved with the model), the Bradley–Terry model's choice probability (Luce) of a among
the public answers of its kind: ``exp(r_a / T) / Σ_b exp(r_b / T)``. It compares a with the other
answers to the SAME image, so an answer the model scores high on every image ("circle", whatever the
shape) earns less than the right one. The absolute ``sigmoid((r_a − offset) / T)`` (the score of a
group of answers none of which is a public answer, and of a model without candidates) let a policy
that always gave such an answer earn almost as much as one that is always right.

Folder layout written by ``save``: ``reward_model.json`` (architecture, sizes, temperature, offset,
whether it was trained with DP and at which ε), ``weights.pt`` (the state dict; for ``lora-vlm`` only
the LoRA matrices and the value head) and, for ``lora-vlm``, ``base/`` (the frozen base VLM).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from torch import nn

from secure_mor.client.compact import CompactEncoder, CompactRewardModel
from secure_mor.client.config import RewardModelConfig
from secure_mor.client.errors import RewardModelError
from secure_mor.client.lora_vlm import LoraVlmEncoder, LoraVlmRewardModel
from secure_mor.data.schema import normalize_answer
from secure_mor.models.factory import Vlm, build_tiny_vlm, load_vlm
from secure_mor.models.presets import PRESETS

META_FILE = "reward_model.json"
WEIGHTS_FILE = "weights.pt"
FORMAT = 2


@dataclass(frozen=True)
class RewardModel:
    """A reward model with its encoder, calibration and provenance."""

    architecture: str
    module: nn.Module
    encoder: Any
    settings: dict[str, Any]
    temperature: float = 1.0
    offset: float = 0.0
    private: bool = False
    epsilon: float | None = None
    vlm: Vlm | None = field(default=None, repr=False)
    candidates: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """The public answers of each question kind an answer is compared with; empty: the sigmoid score."""

    def rewards(
        self,
        images: Sequence[Any],
        questions: Sequence[str],
        answers: Sequence[Sequence[str]],
        batch: int = 64,
    ) -> np.ndarray:
        """Raw rewards (N, K) of the K answers of each row."""
        self.module.eval()
        out = []
        with torch.no_grad():
            for start in range(0, len(questions), batch):
                end = start + batch
                rows = self.encoder.rows(images[start:end], questions[start:end], answers[start:end])
                out.append(self.module(*rows).double().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(answers[0]) if answers else 1))

    def score(self, images: Sequence[Any], questions: Sequence[str], answers: Sequence[str]) -> np.ndarray:
        """Scores (N,) in [0, 1] of one answer per (image, question) (the module docstring says which).

        Answers to the same image object and question (a GRPO group, or the candidate answers the server
        sends for one prompt) are scored as one row, so the image is encoded once per group; rows of the
        same length are scored together.
        """
        groups: dict[tuple[int, str], list[int]] = {}
        for i, (image, question) in enumerate(zip(images, questions, strict=True)):
            groups.setdefault((id(image), question), []).append(i)
        members = list(groups.values())
        plans = [self._choices([answers[i] for i in group]) for group in members]
        by_width: dict[int, list[int]] = {}
        for n, (row, _) in enumerate(plans):
            by_width.setdefault(len(row), []).append(n)
        raw: dict[int, np.ndarray] = {}
        for same in by_width.values():
            firsts = [members[n][0] for n in same]
            values = self.rewards(
                [images[i] for i in firsts], [questions[i] for i in firsts], [plans[n][0] for n in same]
            )
            raw.update(zip(same, values, strict=True))
        out = np.zeros(len(questions))
        for n, (group, (row, choice)) in enumerate(zip(members, plans, strict=True)):
            if choice:
                logits = raw[n] / self.temperature
                probability = np.exp(logits - logits.max())
                probability /= probability.sum()
                where = {answer: j for j, answer in enumerate(row)}
                out[group] = [probability[where[normalize_answer(answers[i])]] for i in group]
            else:
                out[group] = 1.0 / (1.0 + np.exp(-(raw[n] - self.offset) / self.temperature))
        return out

    def _choices(self, answers: list[str]) -> tuple[list[str], bool]:
        """What one group's row scores, and whether its scores are choice probabilities among that row.

        With candidates: every candidate of each kind that one of the group's answers belongs to, and the
        group's other answers; a group with no candidate answer, or a model without candidates, scores
        its own answers by the absolute sigmoid.
        """
        keys = [normalize_answer(answer) for answer in answers]
        kinds = [kind for kind, options in self.candidates.items() if any(key in options for key in keys)]
        if not kinds:
            return answers, False
        pool = dict.fromkeys(option for kind in kinds for option in self.candidates[kind])
        pool.update(dict.fromkeys(keys))
        return list(pool), True

    def pair_rewards(self, pairs: datasets.Dataset) -> np.ndarray:
        """Raw rewards (N, 2) of (chosen, rejected) on preference pairs."""
        answers = list(zip(pairs["chosen"], pairs["rejected"], strict=True))
        return self.rewards(list(pairs["image"]), list(pairs["question"]), answers)

    def calibrated(self, pairs: datasets.Dataset) -> RewardModel:
        """A copy whose temperature and offset are fitted on ``pairs`` (held-out pairs).

        The temperature minimises the log loss against Platt's target (n + 1) / (n + 2) rather than 1: on
        held-out pairs that the model separates perfectly, a target of 1 drives the temperature to the
        grid's floor and every score to exactly 0 or 1, which erases the ranking GRPO needs.
        """
        r = self.pair_rewards(pairs)
        diff = r[:, 0] - r[:, 1]
        target = platt_target(len(diff))
        losses = [
            (target * np.logaddexp(0.0, -diff / t) + (1.0 - target) * np.logaddexp(0.0, diff / t)).mean()
            for t in TEMPERATURES
        ]
        return replace(
            self,
            temperature=float(TEMPERATURES[int(np.argmin(losses))]),
            offset=float(np.median(r.mean(1))),
        )

    def save(self, path: Path) -> Path:
        """Write the model folder (see the module docstring) and return it."""
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT,
            "architecture": self.architecture,
            "settings": self.settings,
            "temperature": self.temperature,
            "offset": self.offset,
            "private": self.private,
            "epsilon": self.epsilon,
            "candidates": {kind: list(answers) for kind, answers in self.candidates.items()},
        }
        state = self.module.state_dict()
        if self.architecture == "lora-vlm":
            assert self.vlm is not None
            _save_base(self.vlm, path / "base")
            trainable = {n for n, p in self.module.named_parameters() if p.requires_grad}
            state = {k: v for k, v in state.items() if k in trainable}
            assert isinstance(self.module, LoraVlmRewardModel)
            meta["grid"] = self.module.grid.tolist()
        torch.save(state, path / WEIGHTS_FILE)
        (path / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return path


TEMPERATURES = np.exp(np.linspace(-5.0, 5.0, 201))
"""The grid ``calibrated`` searches for the score's temperature."""


def platt_target(pairs: int) -> float:
    """Platt's (1999) target probability for ``pairs`` observed wins: (n + 1) / (n + 2), never exactly 1."""
    return (pairs + 1.0) / (pairs + 2.0)


def _save_base(vlm: Vlm, path: Path) -> None:
    """Save the frozen base VLM without its injected LoRA layers (peft's ``base_layer`` keys mapped back)."""
    model: Any = vlm.model
    state = {k.replace(".base_layer.", "."): v for k, v in model.state_dict().items() if "lora_" not in k}
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, state_dict=state)
    vlm.processor.save_pretrained(path)


def build_reward_model(config: RewardModelConfig, texts: Sequence[str] = ()) -> RewardModel:
    """A new reward model of ``config.architecture`` (``texts`` train a tiny VLM's tokenizer)."""
    torch.manual_seed(config.seed)
    settings = {"hidden": config.hidden, "vocab_buckets": config.vocab_buckets, "lora_rank": config.lora_rank}
    if config.architecture == "compact":
        module = CompactRewardModel(config.vocab_buckets, config.hidden)
        return RewardModel("compact", module, CompactEncoder(config.vocab_buckets), settings)
    if config.base_model is not None:
        vlm = load_vlm(config.base_model)
    else:
        vlm = build_tiny_vlm(PRESETS["tiny"], list(texts), seed=config.seed)
    torch.manual_seed(config.seed)
    lora = LoraVlmRewardModel(vlm, config.lora_rank)
    return RewardModel("lora-vlm", lora, LoraVlmEncoder(vlm.processor, lora), settings, vlm=vlm)


def load_reward_model(path: Path) -> RewardModel:
    """Load what ``RewardModel.save`` wrote; refuse a folder that does not hold one."""
    try:
        meta = json.loads((path / META_FILE).read_text())
        state = torch.load(path / WEIGHTS_FILE, weights_only=True)
    except FileNotFoundError as error:
        raise RewardModelError(f"{path}: not a reward model folder ({error.filename} missing)") from None
    except (json.JSONDecodeError, RuntimeError) as error:
        raise RewardModelError(f"{path}: unreadable reward model ({error})") from None
    if meta.get("format") != FORMAT:
        raise RewardModelError(f"{path}: reward model format {meta.get('format')!r}, expected {FORMAT}")
    settings = meta["settings"]
    if meta["architecture"] == "compact":
        module: nn.Module = CompactRewardModel(settings["vocab_buckets"], settings["hidden"])
        module.load_state_dict(state)
        encoder: Any = CompactEncoder(settings["vocab_buckets"])
        vlm = None
    else:
        vlm = load_vlm(path / "base")
        lora = LoraVlmRewardModel(vlm, settings["lora_rank"])
        missing = set(state) - {n for n, _ in lora.named_parameters()}
        if missing:
            raise RewardModelError(f"{path}: weights for unknown parameters {sorted(missing)[:3]}")
        lora.load_state_dict(state, strict=False)
        lora.grid = torch.tensor(meta["grid"], dtype=torch.long)
        module, encoder = lora, LoraVlmEncoder(vlm.processor, lora)
    epsilon = meta.get("epsilon")
    return RewardModel(
        meta["architecture"],
        module,
        encoder,
        settings,
        temperature=float(meta["temperature"]),
        offset=float(meta["offset"]),
        private=bool(meta["private"]),
        epsilon=None if epsilon is None else float(epsilon),
        vlm=vlm,
        candidates={str(k): tuple(map(str, v)) for k, v in meta.get("candidates", {}).items()},
    )


def pairwise_accuracy(rewards: np.ndarray) -> float:
    """Share of pairs whose chosen answer gets the higher reward (ties count half)."""
    if len(rewards) == 0:
        return math.nan
    diff = rewards[:, 0] - rewards[:, 1]
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))
