"""``SimulateConfig``: the whole federation on one machine — what ``secure-mor simulate`` runs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from secure_mor.config import help_field, require


@dataclass(frozen=True)
class ClientSpec:
    """One simulated data owner: its name (= its easy-VQA kind's shard) and reward-model architecture."""

    name: str = help_field("color", "Client name; by default also the name of its data shard.")
    architecture: Literal["compact", "lora-vlm"] = help_field("compact", "Its reward model's architecture.")


DEFAULT_CLIENTS = (
    ClientSpec("color", "compact"),
    ClientSpec("shape", "lora-vlm"),
    ClientSpec("yesno", "compact"),
)
"""One client per easy-VQA question kind, with different reward-model architectures."""


@dataclass(frozen=True)
class SimulateConfig:
    """The ``[simulate]`` table: sizes of every phase of the simulated run."""

    clients: tuple[ClientSpec, ...] = help_field(
        DEFAULT_CLIENTS,
        "The data owners (one per easy-VQA kind by default), with different reward-model architectures.",
    )
    epsilon: float = help_field(3.0, "ε of each client's DP reward-model training (δ = 1e-5).")
    rm_pairs: int = help_field(0, "Preference pairs per client (0 = its whole shard).")
    rm_epochs: int = help_field(20, "DP-SGD epochs of the reward models.")
    rm_public_pairs: int = help_field(
        3000, "Compact reward models: public pairs per kind of their public pretraining (cached)."
    )
    base_steps: int = help_field(1500, "Pretraining steps of the tiny base VLM (cached between runs).")
    base_cache: Path = help_field(Path("~/.cache/secure-mor/base"), "Where pretrained bases are kept.")
    routing: str = help_field("router", "'router' (MoR), 'uniform', 'single:<client>' or 'gold'.")
    grpo_steps: int = help_field(60, "GRPO steps of the server.")
    learning_rate: float = help_field(3e-4, "GRPO learning rate.")
    lora_rank: int = help_field(
        0, "LoRA rank of the policy's adapters; 0 fine-tunes the whole (tiny) policy."
    )
    balance_kinds: bool = help_field(True, "GRPO draws the three question kinds equally often.")
    prompts_per_step: int = help_field(8, "B: prompts per GRPO step.")
    group_size: int = help_field(8, "G: completions per prompt.")
    eval_limit: int = help_field(500, "Test questions evaluated before and after alignment.")
    seed: int = help_field(0, "Seed of the split, the models and sampling.")

    def __post_init__(self) -> None:
        names = [c.name for c in self.clients]
        require(len(names) >= 2, "clients", f"a federation needs ≥ 2 clients (k_min = 2), found {names}")
        require(len(set(names)) == len(names), "clients", f"client names must be unique, found {names}")
        for name in ("rm_epochs", "base_steps", "grpo_steps", "prompts_per_step", "eval_limit"):
            require(getattr(self, name) >= 1, name, f"expected an integer ≥ 1, found {getattr(self, name)}")
        require(self.group_size >= 2, "group_size", f"expected ≥ 2, found {self.group_size}")
        require(self.epsilon > 0, "epsilon", f"expected a number > 0, found {self.epsilon}")
        require(self.learning_rate > 0, "learning_rate", f"expected a number > 0, found {self.learning_rate}")

    def quick(self) -> SimulateConfig:
        """The same run at test size: the same code path, smaller numbers (``--quick``)."""
        return dataclasses.replace(
            self, rm_pairs=200, rm_epochs=3, base_steps=150, grpo_steps=80, prompts_per_step=8, group_size=8,
            eval_limit=150,
        )  # fmt: skip
