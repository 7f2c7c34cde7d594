"""FedAvg-DPO: the parameter-sharing baseline that MoR replaces with preferences.

Each round every client starts from the global LoRA adapters of the base VLM, runs TRL's
``DPOTrainer`` on its own preference pairs (the reference is the base: the adapters disabled), and
sends its adapter update; the server averages the updates into the new global adapters. Under a finite
ε each update is clipped to ``clip_norm`` and released with Gaussian noise of σ · ``clip_norm``,
σ from Opacus' accountant for ``rounds`` releases of the client's whole dataset (sample rate 1): a
client-level (ε, δ) guarantee, stronger than the example-level one of the reward models. DPO's
reference in a round is the round's starting (global) model, TRL's default for a PEFT model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import torch
from opacus.accountants.utils import get_noise_multiplier
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from transformers import PrinterCallback
from trl.trainer.dpo_config import DPOConfig
from trl.trainer.dpo_trainer import DPOTrainer

from secure_mor.experiment.settings import FedAvgDpoSettings
from secure_mor.models.factory import Vlm, load_vlm
from secure_mor.models.prompts import vqa_messages

DELTA = 1e-5
Progress = Callable[[int, int, str], None]
"""Called with (round, rounds, detail) after each round."""

State = dict[str, torch.Tensor]


@dataclass(frozen=True)
class FedAvgResult:
    """The averaged policy and what its privacy cost was."""

    policy: Vlm
    noise_multiplier: float  # σ per release (0 without DP)
    rounds: int
    update_norms: tuple[float, ...]  # each client's update norm per round, before clipping


def dpo_pairs(pairs: datasets.Dataset) -> datasets.Dataset:
    """Preference pairs in TRL's conversational vision format: image, prompt, chosen, rejected."""

    def convert(row: dict[str, Any]) -> dict[str, Any]:
        return {
            "prompt": vqa_messages(row["question"]),
            "chosen": [{"role": "assistant", "content": [{"type": "text", "text": row["chosen"]}]}],
            "rejected": [{"role": "assistant", "content": [{"type": "text", "text": row["rejected"]}]}],
        }

    keep = {"image", "prompt", "chosen", "rejected"}
    return pairs.map(convert, remove_columns=[c for c in pairs.column_names if c not in keep])


def noise_multiplier(epsilon: float, rounds: int) -> float:
    """σ so that ``rounds`` Gaussian releases with sensitivity 1 cost (ε, 1e-5); 0 for ε = inf."""
    if not math.isfinite(epsilon):
        return 0.0
    return float(
        get_noise_multiplier(
            target_epsilon=epsilon, target_delta=DELTA, sample_rate=1.0, steps=rounds, accountant="rdp"
        )
    )


def privatise(delta: State, clip_norm: float, sigma: float, generator: torch.Generator) -> State:
    """Clip the update to ``clip_norm`` (L2 over all tensors) and add N(0, (σ·clip_norm)²) noise."""
    if sigma == 0.0:
        return delta
    scale = min(1.0, clip_norm / (_norm(delta) + 1e-12))
    return {
        k: t * scale + torch.randn(t.shape, generator=generator) * sigma * clip_norm for k, t in delta.items()
    }


class FedAvgDpo:
    """One FedAvg-DPO run over the clients' training pairs (entry object of the baseline)."""

    def __init__(self, base: Path, settings: FedAvgDpoSettings, *, seed: int, work_dir: Path) -> None:
        self.base, self.settings, self.seed, self.work_dir = base, settings, seed, work_dir

    def run(
        self, clients: Mapping[str, datasets.Dataset], epsilon: float, progress: Progress | None = None
    ) -> FedAvgResult:
        """Train ``rounds`` rounds and return the policy with the averaged adapters."""
        settings = self.settings
        vlm = load_vlm(self.base)
        model: Any = get_peft_model(
            vlm.model,
            LoraConfig(
                r=settings.lora_rank,
                lora_alpha=2 * settings.lora_rank,
                target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                task_type="CAUSAL_LM",
            ),
        )
        global_state = _clone(get_peft_model_state_dict(model))
        sigma = noise_multiplier(epsilon, settings.rounds)
        generator = torch.Generator().manual_seed(self.seed)
        data = {name: dpo_pairs(pairs) for name, pairs in clients.items()}
        norms: list[float] = []
        for round_ in range(settings.rounds):
            updates = []
            for index, pairs in enumerate(data.values()):
                set_peft_model_state_dict(model, global_state)
                self._local_dpo(model, vlm.processor, pairs, seed=self.seed * 1000 + round_ * 17 + index)
                local = get_peft_model_state_dict(model)
                delta = {k: local[k].detach() - global_state[k] for k in global_state}
                norms.append(_norm(delta))
                updates.append(privatise(delta, settings.clip_norm, sigma, generator))
            global_state = {
                k: global_state[k] + torch.stack([u[k] for u in updates]).mean(dim=0) for k in global_state
            }
            if progress is not None:
                progress(round_ + 1, settings.rounds, f"σ = {sigma:.2f}")
        set_peft_model_state_dict(model, global_state)
        model.eval()
        return FedAvgResult(Vlm(model, vlm.processor), sigma, settings.rounds, tuple(norms))

    def _local_dpo(self, model: PeftModel, processor: Any, pairs: datasets.Dataset, *, seed: int) -> None:
        settings = self.settings
        config = DPOConfig(
            output_dir=str(self.work_dir),
            max_steps=settings.local_steps,
            per_device_train_batch_size=settings.batch_size,
            learning_rate=settings.learning_rate,
            beta=settings.beta,
            seed=seed,
            logging_steps=settings.local_steps,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            bf16=False,
            disable_tqdm=True,
            gradient_checkpointing=False,
            max_length=None,
        )
        trainer = DPOTrainer(model=model, args=config, train_dataset=pairs, processing_class=processor)
        trainer.remove_callback(PrinterCallback)
        trainer.train()
        # TRL froze a copy of the starting adapters as its reference ("ref"); the next client adds its own.
        model.delete_adapter("ref")
        model.set_adapter("default")


def _norm(state: Mapping[str, torch.Tensor]) -> float:
    return float(torch.cat([t.float().flatten() for t in state.values()]).norm())


def _clone(state: Mapping[str, torch.Tensor]) -> State:
    return {k: v.detach().clone() for k, v in state.items()}
