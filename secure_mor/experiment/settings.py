"""``ExperimentConfig``: the privacy–utility grid of ``secure-mor experiment`` (methods × ε × seeds)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from secure_mor.config import help_field, nested, require
from secure_mor.server.grpo import GrpoSettings
from secure_mor.server.routing import RouterConfig
from secure_mor.simulate.settings import DEFAULT_CLIENTS, ClientSpec

FIXED_METHODS = ("base", "uniform", "router", "gold", "fedavg-dpo")
"""Method names besides ``single:<client>``."""

PRIVATE_METHODS = ("uniform", "router", "fedavg-dpo")
"""Methods whose result depends on the clients' ε (``single:<client>`` too); base and gold do not."""


@dataclass(frozen=True)
class FedAvgDpoSettings:
    """The parameter-sharing baseline: local DPO on each client's pairs, the server averages adapters.

    Under a finite ε each client releases its adapter update through the Gaussian mechanism: the update
    is clipped to ``clip_norm`` and noise of ``σ · clip_norm`` is added, σ chosen by Opacus' PRV
    accountant so that the ``rounds`` releases together cost (ε, δ) for the client's WHOLE dataset
    (client-level DP, which implies the example-level guarantee the reward models give).
    """

    rounds: int = help_field(4, "Federated rounds (each client trains locally, the server averages).")
    local_steps: int = help_field(12, "DPO optimizer steps per client per round.")
    batch_size: int = help_field(16, "Preference pairs per DPO step.")
    learning_rate: float = help_field(2e-3, "AdamW learning rate of the LoRA adapters.")
    beta: float = help_field(0.1, "DPO's β (strength of the implicit KL to the base).")
    lora_rank: int = help_field(8, "LoRA rank of the shared adapters.")
    clip_norm: float = help_field(0.5, "L2 bound on a client's adapter update (finite ε only).")

    def __post_init__(self) -> None:
        for name in ("rounds", "local_steps", "batch_size", "lora_rank"):
            require(getattr(self, name) >= 1, name, f"expected an integer ≥ 1, found {getattr(self, name)}")
        for name in ("learning_rate", "beta", "clip_norm"):
            require(getattr(self, name) > 0, name, f"expected a number > 0, found {getattr(self, name)}")


@dataclass(frozen=True)
class ExperimentConfig:
    """The ``[experiment]`` table: the grid, and the sizes every cell shares.

    The data split and the base model are fixed (``data_seed``) so that cells differ only by method,
    ε and seed; the seed drives the reward models' initialisation and noise, GRPO's sampling and the
    FedAvg-DPO clients' batches.
    """

    out: Path = help_field(Path("runs/experiment"), "Results folder (finished cells there are not rerun).")
    methods: tuple[str, ...] = help_field(
        ("base", "single:color", "single:shape", "single:yesno", "uniform", "router", "gold", "fedavg-dpo"),
        "Methods: base, single:<client>, uniform, router (MoR), gold, fedavg-dpo.",
    )
    epsilons: tuple[float, ...] = help_field(
        (math.inf, 8.0, 3.0, 1.0), "Each client's ε per reward-model training (inf = no DP); δ = 1e-5."
    )
    seeds: tuple[int, ...] = help_field((0, 1, 2), "Seeds; the table reports mean ± std over them.")
    clients: tuple[ClientSpec, ...] = help_field(
        DEFAULT_CLIENTS, "The data owners (one easy-VQA kind each) and their reward-model architectures."
    )
    rm_pairs: int = help_field(0, "Preference pairs per client (0 = its whole shard).")
    rm_epochs: int = help_field(20, "Reward-model training epochs.")
    rm_public_pairs: int = help_field(
        3000, "Compact reward models: public pairs per kind of their public pretraining (cached)."
    )
    base_steps: int = help_field(1500, "Pretraining steps of the shared base VLM (cached).")
    base_cache: Path = help_field(Path("~/.cache/secure-mor/base"), "Where pretrained bases are kept.")
    data_seed: int = help_field(0, "Seed of the data split and the base model, shared by every cell.")
    eval_limit: int = help_field(1000, "Test questions each cell is evaluated on (the same ones everywhere).")
    calibration_items: int = help_field(256, "Public calibration pairs for the router.")
    grpo: GrpoSettings = nested(GrpoSettings, "GRPO of every reward-based method (seed set per cell).")
    router: RouterConfig = nested(RouterConfig, "The MoR router.")
    fedavg: FedAvgDpoSettings = nested(FedAvgDpoSettings, "The FedAvg-DPO baseline.")

    def __post_init__(self) -> None:
        names = [c.name for c in self.clients]
        require(len(names) >= 2, "clients", f"a federation needs ≥ 2 clients, found {names}")
        require(len(set(names)) == len(names), "clients", f"client names must be unique, found {names}")
        require(bool(self.methods), "methods", "list at least one method")
        for method in self.methods:
            known = method in FIXED_METHODS or (
                method.startswith("single:") and method.removeprefix("single:") in names
            )
            require(
                known,
                "methods",
                f"unknown method {method!r}; expected one of {', '.join(FIXED_METHODS)} "
                f"or single:<one of {names}>",
            )
        require(len(set(self.methods)) == len(self.methods), "methods", "a method is listed twice")
        require(bool(self.epsilons), "epsilons", "list at least one ε (inf for no DP)")
        for epsilon in self.epsilons:
            require(epsilon > 0, "epsilons", f"every ε must be > 0 (inf for no DP), found {epsilon}")
        require(len(set(self.epsilons)) == len(self.epsilons), "epsilons", "an ε is listed twice")
        require(bool(self.seeds), "seeds", "list at least one seed")
        require(len(set(self.seeds)) == len(self.seeds), "seeds", "a seed is listed twice")
        for name in ("rm_epochs", "base_steps", "eval_limit", "calibration_items"):
            require(getattr(self, name) >= 1, name, f"expected an integer ≥ 1, found {getattr(self, name)}")

    def depends_on_epsilon(self, method: str) -> bool:
        """Whether ``method`` uses the clients' private data (so its result changes with ε)."""
        return method in PRIVATE_METHODS or method.startswith("single:")
