"""``ExperimentConfig``: the privacy–utility grid of ``secure-mor experiment`` (methods × ε × seeds).

A ``Recipe`` (the same ``[data]``, ``[base]``, ``[[clients]]``, ``[reward_models]``, ``[router]``,
``[grpo]`` and ``[eval]`` tables as ``simulate``) plus ``[experiment]`` (the grid) and ``[fedavg]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from secure_mor.config import help_field, nested, require
from secure_mor.errors import ConfigError
from secure_mor.recipe import Recipe
from secure_mor.server.settings import RoutingSpec

FIXED_METHODS = ("base", "fedavg-dpo")
"""Methods that are not a routing spec (``router``, ``uniform``, ``gold``, ``single:<client>``)."""

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
class GridSettings:
    """The ``[experiment]`` table: the grid itself (methods × ε × seeds) and where its results go."""

    out: Path = help_field(Path("runs/experiment"), "Results folder (finished cells there are not rerun).")
    methods: tuple[str, ...] = help_field(
        (),
        "Methods: base, single:<client>, uniform, router (MoR), gold, fedavg-dpo; empty = all of them, "
        "with single:<client> for each client.",
    )
    epsilons: tuple[float, ...] = help_field(
        (math.inf, 8.0, 3.0, 1.0), "Each client's ε per reward-model training (inf = no DP); δ = 1e-5."
    )
    seeds: tuple[int, ...] = help_field(
        (0, 1, 2),
        "Seeds; each replaces reward_models.seed, router.seed and grpo.seed in its cells. The table "
        "reports mean ± std over them.",
    )

    def __post_init__(self) -> None:
        require(len(set(self.methods)) == len(self.methods), "methods", "a method is listed twice")
        require(bool(self.epsilons), "epsilons", "list at least one ε (inf for no DP)")
        for epsilon in self.epsilons:
            require(epsilon > 0, "epsilons", f"every ε must be > 0 (inf for no DP), found {epsilon}")
        require(len(set(self.epsilons)) == len(self.epsilons), "epsilons", "an ε is listed twice")
        require(bool(self.seeds), "seeds", "list at least one seed")
        require(len(set(self.seeds)) == len(self.seeds), "seeds", "a seed is listed twice")


@dataclass(frozen=True)
class ExperimentConfig(Recipe):
    """Everything ``secure-mor experiment`` reads: the recipe every cell shares, the grid, FedAvg-DPO.

    The data split and the base model are fixed (``[data]``, ``[base]``) so that cells differ only by
    method, ε and seed.
    """

    experiment: GridSettings = nested(GridSettings, "The grid and its results folder.")
    fedavg: FedAvgDpoSettings = nested(FedAvgDpoSettings, "The FedAvg-DPO baseline.")

    def __post_init__(self) -> None:
        super().__post_init__()
        names = self.client_names
        for method in self.methods:
            if method in FIXED_METHODS:
                continue
            try:
                RoutingSpec.parse(method, names)
            except ConfigError:
                raise ConfigError(
                    f"experiment.methods: unknown method {method!r}; expected one of "
                    f"{', '.join(FIXED_METHODS)}, router, uniform, gold or single:<one of {list(names)}>"
                ) from None

    @property
    def out(self) -> Path:
        """The results folder."""
        return self.experiment.out

    @property
    def methods(self) -> tuple[str, ...]:
        """The grid's methods (``experiment.methods``, or every method over these clients if empty)."""
        singles = tuple(f"single:{name}" for name in self.client_names)
        return self.experiment.methods or ("base", *singles, "uniform", "router", "gold", "fedavg-dpo")

    @property
    def epsilons(self) -> tuple[float, ...]:
        """The grid's ε values."""
        return self.experiment.epsilons

    @property
    def seeds(self) -> tuple[int, ...]:
        """The grid's seeds."""
        return self.experiment.seeds

    def depends_on_epsilon(self, method: str) -> bool:
        """Whether ``method`` uses the clients' private data (so its result changes with ε)."""
        return method in PRIVATE_METHODS or method.startswith("single:")
