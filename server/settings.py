"""The server's settings, one object per concern: GRPO, the router, the secure path, evaluation, routing.

Defined once here and composed by the server's ``server.toml`` (``server.config``) and by the
``simulate`` and ``experiment`` recipes, so the three never disagree on a default. This module imports
only ``secure_mor.config``: a config loads (and is refused) without loading torch or TRL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from secure_mor.config import help_field, require
from secure_mor.errors import ConfigError

MixtureReward = Literal["top1", "fused"]
"""How a rollout's reward is read off its prompt's fused candidate scores (``server.mixture``)."""


@dataclass(frozen=True)
class GrpoSettings:
    """GRPO hyper-parameters (the ``[grpo]`` table).

    The defaults are the recipe ``simulate`` runs: the whole tiny policy fine-tuned (``lora_rank = 0``)
    on kind-balanced prompts; a larger policy would set a LoRA rank.
    """

    steps: int = help_field(600, "Optimizer steps (a gold reward needs hundreds to flip greedy answers).")
    prompts_per_step: int = help_field(8, "B: prompts per step (each gets `group_size` completions).")
    group_size: int = help_field(8, "G: completions sampled per prompt; advantages are normalised per group.")
    learning_rate: float = help_field(3e-4, "AdamW learning rate (of the whole policy, or its adapters).")
    beta: float = help_field(0.02, "KL coefficient towards the frozen reference (> 0 keeps it close).")
    loss_type: Literal["grpo", "bnpo", "dr_grpo", "dapo"] = help_field("grpo", "TRL's GRPO loss variant.")
    lora_rank: int = help_field(0, "LoRA rank of the policy's adapters; 0 trains the full model.")
    lora_alpha: int = help_field(16, "LoRA scaling numerator.")
    lora_targets: tuple[str, ...] = help_field(
        ("q_proj", "k_proj", "v_proj", "o_proj"), "Text-attention projections that get adapters."
    )
    temperature: float = help_field(1.0, "Sampling temperature of the completions.")
    max_completion_length: int = help_field(8, "Longest sampled answer, in tokens.")
    save_steps: int = help_field(25, "Checkpoint every this many steps (adapters, optimizer, step counter).")
    seed: int = help_field(0, "Seed of sampling and prompt order.")
    gradient_checkpointing: bool = help_field(
        False,
        "Recompute activations in the backward pass (TRL's GRPOConfig turns it on by default). It saves "
        "memory a tiny model does not need and costs time: benchmarks/grpo_throughput.py --checkpointing "
        "measures it.",
    )
    mixture_reward: MixtureReward = help_field(
        "top1",
        "A rollout's reward from the clients' fused scores of every public answer of its question's kind: "
        "'top1' is 1 for the answer the mixture scores highest, else 0; 'fused' is its fused score. An "
        "answer of another kind gets 0 either way (server.mixture.MixtureOfRewards says why).",
    )
    balance_kinds: bool = help_field(
        True,
        "Draw the public prompts' question kinds (their 'kind' column) equally often; false keeps their "
        "natural mix (easy-VQA: three in four are yes/no, and a short run sees too few of the others).",
    )

    def __post_init__(self) -> None:
        for name in ("steps", "prompts_per_step", "max_completion_length", "save_steps"):
            require(getattr(self, name) >= 1, name, f"expected an integer ≥ 1, found {getattr(self, name)}")
        require(
            self.group_size >= 2,
            "group_size",
            f"GRPO needs ≥ 2 completions per prompt, found {self.group_size}",
        )
        require(self.beta >= 0, "beta", f"expected a number ≥ 0, found {self.beta}")
        require(self.learning_rate > 0, "learning_rate", f"expected a number > 0, found {self.learning_rate}")
        require(self.lora_rank >= 0, "lora_rank", f"expected an integer ≥ 0, found {self.lora_rank}")


@dataclass(frozen=True)
class RouterConfig:
    """Hyper-parameters of the learned router (the ``[router]`` table; ``server.routing``)."""

    clusters: int = help_field(6, "k-means clusters over the calibration prompts' features.")
    temperature: float = help_field(
        0.05,
        "τ: softmax temperature over per-cluster competence (0.05: a client 0.1 more accurate on a "
        "cluster gets e² ≈ 7× the weight).",
    )
    uniform_floor: float = help_field(0.1, "λ: share of every row spread uniformly over clients.")
    w_max: float = help_field(0.75, "Largest weight any client may get (the key holder enforces it).")
    hidden: int = help_field(64, "Width of the gate MLP's hidden layer.")
    epochs: int = help_field(300, "Full-batch training epochs of the gate.")
    calibration_items: int = help_field(
        768, "Public calibration pairs sent to the clients, split evenly over the question kinds."
    )
    prior_pairs: float = help_field(
        8.0,
        "Competence prior: each cluster's accuracy is shrunk towards chance (0.5) as if this many pairs "
        "had been answered at chance, so a small cluster cannot carry a strong weight.",
    )
    seed: int = help_field(0, "Seed of k-means, the calibration pairs and the gate's initialisation.")

    def __post_init__(self) -> None:
        require(self.clusters >= 1, "clusters", f"expected an integer ≥ 1, found {self.clusters}")
        require(self.temperature > 0, "temperature", f"expected a number > 0, found {self.temperature}")
        require(0 <= self.uniform_floor <= 1, "uniform_floor", f"expected [0, 1], found {self.uniform_floor}")
        require(0 < self.w_max <= 1, "w_max", f"expected a number in (0, 1], found {self.w_max}")
        require(self.hidden >= 1, "hidden", f"expected an integer ≥ 1, found {self.hidden}")
        require(self.epochs >= 1, "epochs", f"expected an integer ≥ 1, found {self.epochs}")
        require(self.prior_pairs >= 0, "prior_pairs", f"expected a number ≥ 0, found {self.prior_pairs}")
        require(
            self.calibration_items >= self.clusters,
            "calibration_items",
            f"expected at least one pair per cluster (≥ {self.clusters}), found {self.calibration_items}",
        )


@dataclass(frozen=True)
class SecurePathSettings:
    """How a step is scored (the ``[secure]`` table; ``server.mixture``)."""

    deadline_seconds: float = help_field(30.0, "How long a step waits for the clients' encrypted scores.")
    k_min: int = help_field(2, "Fewest answering clients to fuse; must be ≥ the key holder's k_min.")
    w_max: float = help_field(0.75, "Cap on any router weight; must be ≤ the key holder's w_max.")
    retries: int = help_field(1, "New tries (under new step ids) when fewer than k_min clients answer.")

    def __post_init__(self) -> None:
        require(self.deadline_seconds > 0, "deadline_seconds", f"expected > 0, found {self.deadline_seconds}")
        require(self.k_min >= 1, "k_min", f"expected an integer ≥ 1, found {self.k_min}")
        require(0 < self.w_max <= 1, "w_max", f"expected a number in (0, 1], found {self.w_max}")
        require(self.retries >= 0, "retries", f"expected an integer ≥ 0, found {self.retries}")


@dataclass(frozen=True)
class EvalSettings:
    """Held-out evaluation of a policy (the ``[eval]`` table): the same seeded test questions every run."""

    limit: int = help_field(500, "Test questions evaluated (0 = none).")
    balance_kinds: bool = help_field(
        True, "The same number of test questions of each kind (else the test split's natural mix)."
    )

    def __post_init__(self) -> None:
        require(self.limit >= 0, "limit", f"expected an integer ≥ 0, found {self.limit}")


RoutingKind = Literal["router", "uniform", "single", "gold"]


@dataclass(frozen=True)
class RoutingSpec:
    """How rewards are fused: ``router`` (MoR), ``uniform``, ``single:<client>`` or ``gold`` (upper bound).

    The one parser of routing specs: the server's ``run.routing``, ``simulate``'s routing and the
    experiment's methods all go through ``parse``.
    """

    kind: RoutingKind
    client: str = ""

    @classmethod
    def parse(cls, text: str, clients: tuple[str, ...] | list[str]) -> RoutingSpec:
        """Read ``text``; raise ``ConfigError`` unless it is a spec over ``clients`` (client names)."""
        if text in ("router", "uniform", "gold"):
            return cls(text)  # type: ignore[arg-type]  # narrowed by the test above
        name = text.removeprefix("single:")
        if text.startswith("single:") and name in clients:
            return cls("single", name)
        raise ConfigError(
            f"expected router, uniform, gold or single:<one of {', '.join(clients) or 'no clients'}>, "
            f"found {text!r}"
        )

    @property
    def uses_clients(self) -> bool:
        """Whether the reward comes from the clients' reward models (all but ``gold``)."""
        return self.kind != "gold"

    def __str__(self) -> str:
        return f"single:{self.client}" if self.kind == "single" else self.kind
