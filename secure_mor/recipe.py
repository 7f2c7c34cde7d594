"""``Recipe``: the tables ``simulate`` and ``experiment`` share, composed from each concern's own settings.

A recipe file holds ``[data]`` (the same table as ``base pretrain`` and every role: source, columns,
fractions, clients, seed), ``[base]``, ``[[clients]]``, ``[reward_models]``, ``[router]``, ``[grpo]``
and ``[eval]``; each is the one settings object of its concern (``secure_mor.data.config``,
``secure_mor.server.settings``, below), never a re-declared copy. A table the command does not read is
refused by name, so nothing in the file is silently ignored. This module imports nothing heavy.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self

from secure_mor.config import help_field, nested, require
from secure_mor.crypto.kit import CLIENT_NAME
from secure_mor.data.config import DataConfig, Fractions, KindLimit
from secure_mor.server.settings import EvalSettings, GrpoSettings, RouterConfig

Architecture = Literal["compact", "lora-vlm"]


@dataclass(frozen=True)
class ClientSpec:
    """One simulated data owner: its name, its data shard and its reward model's architecture."""

    name: str = help_field("color", "Client name (its certificate is client:<name>).")
    architecture: Architecture = help_field("compact", "Its reward model: 'compact' or 'lora-vlm'.")
    shard: str = help_field(
        "",
        "Its shard of the data split (by-kind: a kind of the data; dirichlet: client-<i> or a name from "
        "data.clients.names); empty = the client's name.",
    )
    pairs: int | None = help_field(
        None, "Preference pairs of its reward-model training; unset = reward_models.pairs."
    )
    epochs: int | None = help_field(None, "DP-SGD epochs of its reward model; unset = reward_models.epochs.")

    def __post_init__(self) -> None:
        require(
            self.pairs is None or self.pairs >= 0, "pairs", f"expected an integer ≥ 0, found {self.pairs}"
        )
        require(
            self.epochs is None or self.epochs >= 1, "epochs", f"expected an integer ≥ 1, found {self.epochs}"
        )
        require(
            bool(CLIENT_NAME.match(self.name)),
            "name",
            f"expected 1–32 characters of a-z, 0-9, '-' or '_' (a certificate name), found {self.name!r}",
        )

    @property
    def data_shard(self) -> str:
        """The shard this client trains on."""
        return self.shard or self.name


BENCHMARK_DATA = DataConfig(
    fractions=Fractions(foundation=0.1, prompts=0.15, calibration=0.05, clients=0.7),
    foundation_limits=(KindLimit("color", 20), KindLimit("shape", 100), KindLimit("yesno", 300)),
)
"""The default benchmark's split: what the clients know is scarce in public.

The base VLM learns from a small foundation split (a tenth of the training images) that holds only 20
colour, 100 shape and 300 yes/no questions; the clients hold seven tenths of the images, one kind
each (README, "The benchmark"). A ``[data]`` table in a recipe file changes only the fields it names;
one that names another source starts from ``DataConfig()`` (no limits), since this split is easy-VQA's.
"""

DEFAULT_CLIENTS = (
    ClientSpec("color", "compact"),
    ClientSpec("shape", "compact"),
    ClientSpec("yesno", "lora-vlm", pairs=2000, epochs=10),
)
"""One client per easy-VQA question kind, with different reward-model architectures.

The LoRA-VLM client judges yes/no questions, which its base VLM can read; it trains on at most 2000
pairs (its shard's ~1300 training pairs) for 10 epochs, and the compact clients for 20."""


@dataclass(frozen=True)
class BaseSettings:
    """The shared base VLM (the ``[base]`` table): pretrained on the foundation split, cached."""

    steps: int = help_field(300, "Pretraining steps of the tiny base VLM (on the small foundation split).")
    preset: str = help_field("tiny", "Model size preset (secure_mor.models.presets).")
    cache: Path = help_field(
        Path("~/.cache/secure-mor/base"),
        "Where pretrained bases are kept, keyed by their recipe and a fingerprint of the foundation data.",
    )

    def __post_init__(self) -> None:
        require(self.steps >= 1, "steps", f"expected an integer ≥ 1, found {self.steps}")


@dataclass(frozen=True)
class RewardModelSettings:
    """Sizes of every client's reward-model training (the ``[reward_models]`` table)."""

    pairs: int = help_field(0, "Preference pairs per client (0 = its whole shard).")
    epochs: int = help_field(20, "DP-SGD epochs.")
    public_pairs: int = help_field(
        3000, "Compact models: public pairs per question kind of their public pretraining (cached)."
    )
    public_cache: Path = help_field(
        Path("~/.cache/secure-mor/compact"), "Compact models: where publicly pretrained weights are kept."
    )
    seed: int = help_field(0, "Seed of the models' initialisation, pair order and DP noise.")

    def __post_init__(self) -> None:
        require(self.pairs >= 0, "pairs", f"expected an integer ≥ 0, found {self.pairs}")
        require(self.epochs >= 1, "epochs", f"expected an integer ≥ 1, found {self.epochs}")
        require(self.public_pairs >= 0, "public_pairs", f"expected an integer ≥ 0, found {self.public_pairs}")


@dataclass(frozen=True)
class Recipe:
    """Data, base, clients, reward models, router, GRPO and evaluation of a federated alignment run."""

    data: DataConfig = help_field(
        BENCHMARK_DATA, "The VQA source and its seeded split (by default the benchmark's: BENCHMARK_DATA)."
    )
    base: BaseSettings = nested(BaseSettings, "The shared base VLM.")
    clients: tuple[ClientSpec, ...] = help_field(
        DEFAULT_CLIENTS, "The data owners ([[clients]]): one per easy-VQA kind by default."
    )
    reward_models: RewardModelSettings = nested(RewardModelSettings, "The clients' reward-model training.")
    router: RouterConfig = nested(RouterConfig, "The MoR router.")
    grpo: GrpoSettings = nested(GrpoSettings, "The server's GRPO.")
    eval: EvalSettings = nested(EvalSettings, "Held-out evaluation of the base and the aligned policy.")

    def __post_init__(self) -> None:
        names = self.client_names
        require(len(names) >= 2, "clients", f"a federation needs ≥ 2 clients (k_min = 2), found {names}")
        require(len(set(names)) == len(names), "clients", f"client names must be unique, found {names}")
        shards = [c.data_shard for c in self.clients]
        require(len(set(shards)) == len(shards), "clients", f"two clients share a shard: {shards}")

    @property
    def client_names(self) -> tuple[str, ...]:
        """The clients' names, in order."""
        return tuple(c.name for c in self.clients)

    def quick(self) -> Self:
        """The same run at test size (``--quick``): the same code path, smaller numbers.

        The clients' training is the full run's: a compact client trains its whole shard in seconds, and
        the default LoRA-VLM client needs its whole shard for 10 epochs at ε = 3 (on the quick base,
        held-out 0.835; for 6 epochs or 480 pairs × 8, chance). A client that knows less than the policy
        has nothing to teach it: at 600 pairs × 8 epochs the colour client ranked the gold colour first
        for 54 % of test questions, the quick base answered 50 % right, and alignment lowered colour.
        """
        return dataclasses.replace(
            self,
            base=dataclasses.replace(self.base, steps=150),
            grpo=dataclasses.replace(self.grpo, steps=80, prompts_per_step=8, group_size=8),
            eval=dataclasses.replace(self.eval, limit=150),
        )
