"""``ServerConfig``: the server's frozen config, the ``server.toml`` of its startup kit.

Tables: ``[federation]`` (identity, mTLS files, signing key, trust — from ``secure-mor init``),
``[service]`` (the Federation endpoint), ``[run]`` (base model, run folder, routing), ``[router]``,
``[secure]`` (the secure path of a step), ``[grpo]``, ``[eval]`` and ``[data]`` (one settings object
each, from ``server.settings`` and ``secure_mor.data``). Relative paths resolve against the
file's folder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from secure_mor.config import beside, help_field, load_config, nested, require
from secure_mor.crypto.kit import SERVER_IDENTITY, FederationConfig
from secure_mor.crypto.step_id import run_id_problem
from secure_mor.data import DataConfig
from secure_mor.errors import ConfigError
from secure_mor.server.settings import (
    EvalSettings,
    GrpoSettings,
    RouterConfig,
    RoutingSpec,
    SecurePathSettings,
)


@dataclass(frozen=True)
class ServiceSettings:
    """The server's Federation endpoint (the ``[service]`` table)."""

    listen: str = help_field("0.0.0.0:50050", "host:port to listen on (mTLS only).")
    max_message_bytes: int = help_field(16 * 1024 * 1024, "Bound on one gRPC message, both directions.")
    heartbeat_seconds: float = help_field(5.0, "Heartbeat period; a client silent for 3 periods is dropped.")
    max_clients: int = help_field(64, "Most clients connected at once (each holds one stream).")
    wait_for_clients_seconds: float = help_field(120.0, "How long training waits for k_min clients to join.")

    def __post_init__(self) -> None:
        require(self.max_clients >= 1, "max_clients", f"expected an integer ≥ 1, found {self.max_clients}")
        require(
            self.heartbeat_seconds > 0, "heartbeat_seconds", f"expected > 0, found {self.heartbeat_seconds}"
        )


@dataclass(frozen=True)
class RunSettings:
    """What to align and how rewards are formed (the ``[run]`` table)."""

    base_model: Path = help_field(Path("../base"), "The pretrained base VLM folder (save_pretrained format).")
    run_dir: Path = help_field(Path("run"), "Where checkpoints, the router, logs and the eval go.")
    run_id: str = help_field("mor", "Prefix of every step id ([A-Za-z0-9._:-], ≤ 100); change it per run.")
    routing: str = help_field("router", "'router' (MoR), 'uniform', 'single:<client name>' or 'gold'.")
    clients: tuple[str, ...] = help_field(
        (), "Client names of the federation, in order (required unless gold)."
    )

    def __post_init__(self) -> None:
        try:
            spec = RoutingSpec.parse(self.routing, self.clients)
        except ConfigError as error:
            raise ConfigError(f"routing: {error}") from None
        require(not spec.uses_clients or bool(self.clients), "clients", "list the federation's client names")
        problem = run_id_problem(self.run_id)
        require(problem is None, "run_id", problem or "")

    @property
    def routing_spec(self) -> RoutingSpec:
        """``routing``, parsed."""
        return RoutingSpec.parse(self.routing, self.clients)

    @property
    def identities(self) -> tuple[str, ...]:
        """The clients' certificate identities, in order."""
        return tuple(f"client:{c}" for c in self.clients)


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``secure-mor server serve`` and ``secure-mor server train`` read."""

    federation: FederationConfig = field(
        default_factory=lambda: FederationConfig(identity=SERVER_IDENTITY),
        metadata={"help": "Identity, mTLS files, signing key, trust."},
    )
    service: ServiceSettings = nested(ServiceSettings, "The Federation endpoint.")
    run: RunSettings = nested(RunSettings, "Base model, run folder, routing, clients.")
    router: RouterConfig = nested(RouterConfig, "The MoR router.")
    secure: SecurePathSettings = nested(SecurePathSettings, "Deadline, k_min, w_max, retries of a step.")
    grpo: GrpoSettings = nested(GrpoSettings, "GRPO hyper-parameters.")
    eval: EvalSettings = nested(EvalSettings, "Held-out evaluation after training.")
    data: DataConfig = nested(DataConfig, "Public prompts, calibration and test sets.")

    def __post_init__(self) -> None:
        require(
            self.federation.identity == SERVER_IDENTITY,
            "federation.identity",
            f"the server's identity must be {SERVER_IDENTITY!r}, found {self.federation.identity!r}",
        )
        require(
            self.secure.w_max >= self.router.w_max,
            "router.w_max",
            f"{self.router.w_max} exceeds secure.w_max = {self.secure.w_max}",
        )


def load_server_config(path: Path) -> ServerConfig:
    """Load ``server.toml``; relative defaults (base model, run folder) resolve against its folder too."""
    config = load_config(ServerConfig, path)
    run = dataclasses.replace(
        config.run, base_model=beside(path, config.run.base_model), run_dir=beside(path, config.run.run_dir)
    )
    return dataclasses.replace(config, run=run)
