"""The client's frozen config: the ``client.toml`` of its startup kit, plus the client's own tables.

Tables: ``[federation]`` (written by ``secure-mor init``: identity, mTLS files, signing key, trust file),
``[data]`` (the VQA source and split, shared with the other roles), ``[reward_model]``, ``[training]``,
``[privacy]`` (per-run ε, δ, total budget, ledger) and ``[agent]`` (the scoring agent). Every table but
``[federation]`` has defaults; relative paths resolve against the config file's folder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from secure_mor.config import beside, help_field, load_config, nested, require
from secure_mor.crypto.kit import FederationConfig
from secure_mor.data import DataConfig

Architecture = Literal["compact", "lora-vlm"]


@dataclass(frozen=True)
class RewardModelConfig:
    """Which reward model this client trains, on which shard, and where it is saved."""

    architecture: Architecture = help_field(
        "compact", "'compact' (small CNN + hashed bag-of-words) or 'lora-vlm' (LoRA on a VLM)."
    )
    shard: str = help_field("", "Name of this client's shard in the data split; empty = the client's name.")
    base_model: Path | None = help_field(
        None, "lora-vlm: a save_pretrained VLM folder; unset = a freshly built tiny Qwen2-VL (tests only)."
    )
    lora_rank: int = help_field(8, "lora-vlm: rank of the LoRA adapters on the text attention.")
    hidden: int = help_field(64, "compact: width of the image, text and joint features.")
    vocab_buckets: int = help_field(256, "compact: hash buckets of the word embedding (no data vocabulary).")
    heldout_fraction: float = help_field(
        0.2, "Share of the shard's images held out for accuracy/calibration."
    )
    public_pretraining: bool = help_field(
        True,
        "compact: start from a model pretrained on the PUBLIC splits (foundation, prompts, calibration; "
        "no privacy cost), computed once and cached by recipe hash.",
    )
    public_epochs: int = help_field(8, "compact: epochs of the public pretraining.")
    public_pairs_per_kind: int = help_field(
        3000, "compact: public pairs per question kind for pretraining (0 = all; balances the kinds)."
    )
    public_cache: Path = help_field(
        Path("~/.cache/secure-mor/compact"), "compact: folder of the cached publicly pretrained weights."
    )
    freeze_encoders: bool = help_field(
        True,
        "compact, with public pretraining: keep the public convolutions and word embeddings frozen in "
        "private training (fewer noisy parameters; DP-SGD then clips Linear layers only, cheaply).",
    )
    label_noise: float = help_field(0.0, "Share of pairs whose chosen and rejected are swapped (annotators).")
    off_kind_share: float | None = help_field(
        None,
        "Share of the private training pairs whose rejected answer becomes an answer of another kind (from "
        "the public answer vocabulary; each private pair still appears once, so the DP unit is unchanged). "
        "Unset = 0.25 for lora-vlm (nothing else teaches it that 'red' does not answer 'is there a "
        "circle?') and 0 for compact (its public pretraining does).",
    )
    limit: int = help_field(0, "Use at most this many pairs of the shard (0 = all).")
    seed: int = help_field(0, "Seed of the model's initialisation, the pair building and the hold-out.")
    out: Path = help_field(Path("state/reward_model"), "Folder the trained reward model is saved to.")

    def __post_init__(self) -> None:
        require(self.lora_rank >= 1, "lora_rank", f"expected an integer ≥ 1, found {self.lora_rank}")
        require(self.hidden >= 4, "hidden", f"expected an integer ≥ 4, found {self.hidden}")
        require(self.vocab_buckets >= 16, "vocab_buckets", f"expected ≥ 16, found {self.vocab_buckets}")
        require(
            0.0 < self.heldout_fraction < 1.0,
            "heldout_fraction",
            f"expected a number in (0, 1), found {self.heldout_fraction}",
        )
        require(self.limit >= 0, "limit", f"expected an integer ≥ 0, found {self.limit}")
        require(
            self.off_kind_share is None or 0.0 <= self.off_kind_share <= 1.0,
            "off_kind_share",
            f"expected a share in [0, 1], found {self.off_kind_share}",
        )
        require(
            self.public_epochs >= 1, "public_epochs", f"expected an integer ≥ 1, found {self.public_epochs}"
        )
        require(
            self.public_pairs_per_kind >= 0,
            "public_pairs_per_kind",
            f"expected an integer ≥ 0, found {self.public_pairs_per_kind}",
        )


@dataclass(frozen=True)
class TrainingConfig:
    """DP-SGD hyper-parameters (the noise multiplier is derived from the per-run ε, δ and these)."""

    epochs: int = help_field(20, "Passes over the training pairs (in expectation, with Poisson sampling).")
    batch_size: int = help_field(
        128, "Expected logical batch size, in pairs (sample rate = batch / dataset)."
    )
    physical_batch_size: int = help_field(128, "Largest batch held in memory at once (BatchMemoryManager).")
    learning_rate: float | None = help_field(
        None,
        "Adam learning rate; unset = the architecture's default: compact 1e-2; lora-vlm 1e-2 under DP "
        "and 1e-3 without (measured: without DP, 1e-2 leaves it at chance; under DP, 1e-3 does, as the "
        "noise dominates Adam's second moment and shrinks its steps).",
    )
    max_grad_norm: float | None = help_field(
        None, "Per-pair clipping norm C; unset = the architecture's default (compact 1.0, lora-vlm 0.01)."
    )
    grad_sample_mode: Literal["auto", "ghost", "hooks"] = help_field(
        "auto", "Per-pair gradients: auto = ghost for compact, hooks for lora-vlm (ghost is inexact there)."
    )

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "physical_batch_size"):
            value = getattr(self, name)
            require(value >= 1, name, f"expected an integer ≥ 1, found {value}")
        require(
            self.learning_rate is None or self.learning_rate > 0,
            "learning_rate",
            f"expected > 0, found {self.learning_rate}",
        )
        require(
            self.max_grad_norm is None or self.max_grad_norm > 0,
            "max_grad_norm",
            f"expected a number > 0, found {self.max_grad_norm}",
        )


@dataclass(frozen=True)
class PrivacyConfig:
    """The client's differential-privacy budget and its signed ledger."""

    epsilon: float = help_field(3.0, "ε of one training run (inf = train without DP, for comparison only).")
    delta: float = help_field(1e-5, "δ of one training run; keep it below 1 / (number of pairs).")
    budget: float = help_field(10.0, "Total ε this client spends over all its runs (basic composition).")
    ledger: Path = help_field(Path("state/privacy_ledger.jsonl"), "The signed hash-chained privacy ledger.")

    def __post_init__(self) -> None:
        require(self.epsilon > 0, "epsilon", f"expected a number > 0 (or inf), found {self.epsilon}")
        require(0.0 < self.delta < 1e-2, "delta", f"expected a number in (0, 0.01), found {self.delta}")
        require(
            self.budget > 0 and math.isfinite(self.budget),
            "budget",
            f"expected a finite number > 0, found {self.budget}",
        )


@dataclass(frozen=True)
class AgentConfig:
    """The scoring agent: bounds, timing and reconnection."""

    max_rollouts: int = help_field(4096, "Largest scoring task (rollouts) accepted; larger ones are refused.")
    max_image_bytes: int = help_field(1 << 20, "Largest image of one rollout, in bytes.")
    max_message_bytes: int = help_field(16 * 1024 * 1024, "Largest gRPC message sent or received.")
    heartbeat_seconds: float = help_field(10.0, "Interval of heartbeats sent to the server.")
    reconnect_initial_seconds: float = help_field(1.0, "First reconnection delay (doubles each failure).")
    reconnect_max_seconds: float = help_field(60.0, "Longest reconnection delay.")
    allow_non_private: bool = help_field(
        False, "INSECURE: score with a model trained without DP (epsilon = inf); for experiments only."
    )
    threads: int = help_field(
        0,
        "CPU threads torch may use for scoring (0 = its default, one per core). simulate sets 1: its "
        "clients share the machine with the server, and more threads than cores spin against each other.",
    )

    def __post_init__(self) -> None:
        require(self.max_rollouts >= 1, "max_rollouts", f"expected ≥ 1, found {self.max_rollouts}")
        require(self.threads >= 0, "threads", f"expected an integer ≥ 0, found {self.threads}")
        require(
            self.heartbeat_seconds > 0, "heartbeat_seconds", f"expected > 0, found {self.heartbeat_seconds}"
        )
        require(
            0 < self.reconnect_initial_seconds <= self.reconnect_max_seconds,
            "reconnect_initial_seconds",
            "expected 0 < reconnect_initial_seconds ≤ reconnect_max_seconds, found "
            f"{self.reconnect_initial_seconds} and {self.reconnect_max_seconds}",
        )


@dataclass(frozen=True)
class ClientConfig:
    """A client's whole config (``client.toml``)."""

    federation: FederationConfig = nested(FederationConfig, "Identity, mTLS files, keys (from the kit).")
    data: DataConfig = nested(DataConfig, "VQA source and split (the shard named by reward_model.shard).")
    reward_model: RewardModelConfig = nested(RewardModelConfig, "The reward model.")
    training: TrainingConfig = nested(TrainingConfig, "DP-SGD hyper-parameters.")
    privacy: PrivacyConfig = nested(PrivacyConfig, "Per-run ε and δ, total budget, ledger.")
    agent: AgentConfig = nested(AgentConfig, "The scoring agent.")

    def __post_init__(self) -> None:
        require(
            self.federation.identity.startswith("client:"),
            "federation.identity",
            f"expected 'client:<name>' (from the client's kit), found {self.federation.identity!r}",
        )

    @property
    def name(self) -> str:
        """The client's name (its identity without the ``client:`` prefix)."""
        return self.federation.identity.removeprefix("client:")

    @property
    def shard(self) -> str:
        """The data shard this client trains on."""
        return self.reward_model.shard or self.name


def load_client_config(path: Path) -> ClientConfig:
    """Load ``client.toml``; relative default paths (model, ledger) resolve against its folder too."""
    config = load_config(ClientConfig, path)
    rm, privacy = config.reward_model, config.privacy
    return replace(
        config,
        reward_model=replace(
            rm, out=beside(path, rm.out), public_cache=beside(path, rm.public_cache.expanduser())
        ),
        privacy=replace(privacy, ledger=beside(path, privacy.ledger)),
    )
