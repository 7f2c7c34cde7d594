"""``SimulateConfig``: the whole federation on one machine — what ``secure-mor simulate`` runs.

A ``Recipe`` (data, base, clients, reward models, router, GRPO, evaluation) plus the ``[simulate]``
table and the server's ``[secure]`` table. ``load_simulate_config`` reads a whole file: every table in
it is one of these, or the file is refused naming the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from secure_mor.config import help_field, load_config, nested, require
from secure_mor.errors import ConfigError
from secure_mor.recipe import DEFAULT_CLIENTS, ClientSpec, Recipe
from secure_mor.server.settings import RoutingSpec, SecurePathSettings

__all__ = ["DEFAULT_CLIENTS", "ClientSpec", "SimulateConfig", "SimulateSettings", "load_simulate_config"]


@dataclass(frozen=True)
class SimulateSettings:
    """The ``[simulate]`` table: what is private and how rewards are fused."""

    epsilon: float = help_field(3.0, "ε of each client's DP reward-model training (δ = 1e-5).")
    routing: str = help_field("router", "'router' (MoR), 'uniform', 'single:<client>' or 'gold'.")

    def __post_init__(self) -> None:
        require(self.epsilon > 0, "epsilon", f"expected a number > 0, found {self.epsilon}")


@dataclass(frozen=True)
class SimulateConfig(Recipe):
    """Everything ``secure-mor simulate`` reads: the recipe, ``[simulate]`` and ``[secure]``."""

    simulate: SimulateSettings = nested(SimulateSettings, "ε and routing of the simulated run.")
    secure: SecurePathSettings = nested(SecurePathSettings, "Deadline, k_min, w_max, retries of a step.")

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            RoutingSpec.parse(self.simulate.routing, self.client_names)
        except ConfigError as error:
            raise ConfigError(f"simulate.routing: {error}") from None
        require(
            self.secure.w_max >= self.router.w_max,
            "router.w_max",
            f"{self.router.w_max} exceeds secure.w_max = {self.secure.w_max}",
        )


def load_simulate_config(path: Path | None) -> SimulateConfig:
    """The config in ``path`` (every table read or refused by name); the defaults without a file."""
    return load_config(SimulateConfig, path) if path is not None else SimulateConfig()
