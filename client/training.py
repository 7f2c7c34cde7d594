"""Train a client's reward model on its preference pairs: Bradley–Terry loss under Opacus DP-SGD.

One entry point, ``train_reward_model``. With a finite ε it (1) refuses a run that would exceed the
ledger's budget, (2) makes model, optimizer and data loader private with ``make_private_with_epsilon``
(PRV accountant, Poisson sampling, noise calibrated for the per-run ε and δ over the configured
epochs), (3) trains in physical batches through ``BatchMemoryManager``, (4) records the run in the
signed ledger. With ε = inf it trains the same model with the same batch size and no DP (comparison).

Public initialisation (compact): ``initial_state`` (the publicly pretrained weights of
``secure_mor.client.public_init``) starts the model; with ``freeze_encoders`` its convolutions and word
embeddings stay frozen, so DP-SGD trains and noises only the Linear layers. The non-private comparison run
(ε = inf) starts from the same weights and trains the same parameters, so the accuracy gap and the time
ratio compare like with like.

Grad-sample modes: the compact model uses ghost clipping (``"ghost"``: per-pair norms without
materialising per-pair gradients; Conv2d falls back to explicit per-pair gradients inside it, and
Embedding norms are costly; frozen, they need neither, so only Linear norms are computed); the LoRA
VLM runs two forwards per pair, which ghost clipping cannot combine exactly, so it uses hooks.

Empty Poisson batches: Opacus' loader yields a batch of size 0; the forward, backward and noisy step
still run (the step must happen: skipping it would make the noise depend on the data).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import datasets
import torch
from opacus import PrivacyEngine
from opacus.utils.batch_memory_manager import BatchMemoryManager
from torch.utils.data import DataLoader

from secure_mor.client.bt_loss import BradleyTerryLoss
from secure_mor.client.compact import CompactRewardModel
from secure_mor.client.config import PrivacyConfig, RewardModelConfig, TrainingConfig
from secure_mor.client.ledger import DpEvent, DpRun, PrivacyLedger
from secure_mor.client.reward_model import RewardModel, build_reward_model, pairwise_accuracy
from secure_mor.errors import ConfigError

GRAD_SAMPLE_MODE = {"compact": "ghost", "lora-vlm": "hooks"}
CLIP_NORM = {"compact": 1.0, "lora-vlm": 0.01}
"""Default per-pair clipping norms: near the typical per-pair gradient norm of each architecture (the
LoRA VLM's are ~100× smaller; with C = 1 nothing is clipped and the noise σ·C drowns the signal)."""
LEARNING_RATE = {
    ("compact", True): 1e-2,
    ("compact", False): 1e-2,
    ("lora-vlm", True): 1e-2,
    ("lora-vlm", False): 1e-3,
}
"""Adam's learning rate per (architecture, trained under DP) when ``TrainingConfig.learning_rate`` is unset.

Measured on the benchmark's yes/no shard (1322 pairs, 10 epochs): the LoRA VLM reaches 0.83 held-out
pairwise accuracy at ε = 3 with 1e-2 and stays at chance with 1e-3; without DP the reverse (0.77 at 1e-3,
chance at 1e-2)."""

Progress = Callable[[int, int, float], None]
"""Called after each logical step with (step, total steps, loss)."""


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    model: RewardModel
    accuracy: float
    seconds: float
    """The whole run: encoding the pairs, σ calibration, training, held-out calibration and the ledger."""
    epsilon: float
    steps: int
    dataset_size: int
    noise_multiplier: float
    sample_rate: float
    grad_sample_mode: str
    setup_seconds: float = 0.0
    """Of ``seconds``: the time ``make_private_with_epsilon`` took (calibrating σ with the accountant)."""
    cpu_seconds: float = 0.0
    """CPU time of this process (all its threads) over the same span as ``seconds``: on a shared machine
    it depends far less than wall time on what the other processes do."""
    loop_seconds: float = 0.0
    """Of ``seconds``: the training steps alone (DP-SGD's per-step cost, without any one-off setup)."""


def _texts(pairs: datasets.Dataset) -> list[str]:
    return [*pairs["question"], *pairs["chosen"], *pairs["rejected"]]


def _step_without_pairs(optimizer: Any, params: list[torch.nn.Parameter], mode: str) -> torch.Tensor:
    """The DP step of an empty Poisson batch: no pair to clip, but the noise is added all the same."""
    for parameter in params:
        if mode == "ghost":
            parameter.grad = torch.zeros_like(parameter)  # ghost clipping's optimizer reads the summed grad
        else:
            parameter.grad_sample = parameter.new_zeros((0, *parameter.shape))  # type: ignore[attr-defined]
    optimizer.step()
    return torch.zeros(())


def train_reward_model(
    train: datasets.Dataset,
    heldout: datasets.Dataset,
    *,
    model_config: RewardModelConfig,
    training: TrainingConfig,
    privacy: PrivacyConfig,
    epsilon: float,
    ledger: PrivacyLedger | None,
    progress: Progress | None = None,
    initial_state: Mapping[str, torch.Tensor] | None = None,
    public_init: str | None = None,
) -> TrainResult:
    """Train on ``train`` pairs at ``epsilon`` (inf = no DP), calibrate on ``heldout``, record in ``ledger``.

    A finite ``epsilon`` needs a ledger: the run is checked against ``privacy.budget`` before training.
    ``initial_state`` (compact only) starts from public weights; ``public_init`` names their recipe in
    the saved model's settings.
    """
    with warnings.catch_warnings():
        # Opacus warns about hooks on modules whose inputs need no gradient (the first layers), the
        # RDP fallback's alpha range and secure_mode (no torchcsprng here: SECURITY.md).
        warnings.filterwarnings("ignore", message=".*(Full backward hook|Optimal order|Secure RNG).*")
        start = _Start(initial_state, public_init)
        return _train(train, heldout, model_config, training, privacy, epsilon, ledger, progress, start)


@dataclass(frozen=True)
class _Start:
    state: Mapping[str, torch.Tensor] | None
    recipe: str | None


def _train(
    train: datasets.Dataset,
    heldout: datasets.Dataset,
    model_config: RewardModelConfig,
    training: TrainingConfig,
    privacy: PrivacyConfig,
    epsilon: float,
    ledger: PrivacyLedger | None,
    progress: Progress | None,
    start_from: _Start,
) -> TrainResult:
    began, cpu_began = time.perf_counter(), time.process_time()
    private = math.isfinite(epsilon)
    setup = 0.0
    if private:
        if ledger is None:
            raise ValueError("a DP run needs the privacy ledger")
        ledger.check(epsilon, privacy.budget)
    reward_model = build_reward_model(model_config, _texts(train))
    module = reward_model.module
    if start_from.state is not None:
        if not isinstance(module, CompactRewardModel):
            raise ConfigError("reward_model: a public initial state is for the compact architecture only")
        module.load_state_dict(dict(start_from.state))
        if model_config.freeze_encoders:
            module.freeze_encoders()
        reward_model = replace(
            reward_model, settings={**reward_model.settings, "public_init": start_from.recipe}
        )
    data = reward_model.encoder.pairs(train)
    n = len(data)
    batch_size = min(training.batch_size, n)
    trainable = [p for p in module.parameters() if p.requires_grad]
    learning_rate = training.learning_rate or LEARNING_RATE[reward_model.architecture, private]
    optimizer = torch.optim.Adam(trainable, lr=learning_rate)
    criterion: Any = BradleyTerryLoss()
    loader: Any = DataLoader(data, batch_size=batch_size, shuffle=True)
    mode = GRAD_SAMPLE_MODE[reward_model.architecture]
    clip = training.max_grad_norm or CLIP_NORM[reward_model.architecture]
    if training.grad_sample_mode != "auto":
        if training.grad_sample_mode == "ghost" and reward_model.architecture == "lora-vlm":
            raise ConfigError(
                "training.grad_sample_mode: ghost clipping is inexact for lora-vlm (two forwards per pair "
                "give two norms, not the norm of the pair's gradient); use 'auto' or 'hooks'"
            )
        mode = training.grad_sample_mode
    module.train()
    engine: PrivacyEngine | None = None
    model: Any = module
    if private:
        engine = PrivacyEngine(accountant="prv")
        setup = time.perf_counter()
        made = engine.make_private_with_epsilon(
            module=module,
            optimizer=optimizer,
            criterion=criterion,
            data_loader=loader,
            target_epsilon=epsilon,
            target_delta=privacy.delta,
            epochs=training.epochs,
            max_grad_norm=clip,
            poisson_sampling=True,
            grad_sample_mode=mode,
        )
        setup = time.perf_counter() - setup
        if mode == "ghost":
            model, optimizer, criterion, loader = made
        else:
            model, optimizer, loader = made
    steps_per_epoch = len(loader)
    total = steps_per_epoch * training.epochs
    step = 0
    loop_began = time.perf_counter()
    for _ in range(training.epochs):
        if private:
            with BatchMemoryManager(
                data_loader=loader, max_physical_batch_size=training.physical_batch_size, optimizer=optimizer
            ) as physical:
                for batch in physical:
                    if batch[0].shape[0] == 0:
                        loss = _step_without_pairs(optimizer, trainable, mode)
                    else:
                        loss = criterion(model(*batch))
                        loss.backward()
                        optimizer.step()
                    optimizer.zero_grad()
                    if not getattr(optimizer, "_is_last_step_skipped", False):
                        step += 1
                        if progress is not None:
                            progress(step, total, float(loss.item()))
        else:
            for batch in loader:
                loss = criterion(model(*batch))
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                step += 1
                if progress is not None:
                    progress(step, total, float(loss.item()))
    loop_seconds = time.perf_counter() - loop_began
    if private and hasattr(model, "_close"):
        model._close()  # remove Opacus' hooks: the module is used plainly from now on
    module.eval()
    result_model = RewardModel(
        reward_model.architecture,
        module,
        reward_model.encoder,
        reward_model.settings,
        private=private,
        epsilon=None,
        vlm=reward_model.vlm,
    ).calibrated(heldout)
    accuracy = pairwise_accuracy(result_model.pair_rewards(heldout))
    if engine is not None and ledger is not None:
        history = engine.accountant.history
        events = tuple(DpEvent(float(s), float(q), int(t)) for s, q, t in history)
        spent = float(engine.get_epsilon(privacy.delta))
        run = DpRun(n, events, clip, privacy.delta, spent, epsilon, reward_model.architecture, mode)
        ledger.record_dp(run, privacy.budget)
        noise, rate = events[0].noise_multiplier, events[0].sample_rate
    else:
        spent, noise, rate = math.inf, 0.0, batch_size / n
        if ledger is not None:
            ledger.record_non_private(n, step, reward_model.architecture)
    result_model = replace(result_model, epsilon=spent if private else None)
    used = mode if private else "none"
    seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - cpu_began
    return TrainResult(
        result_model, accuracy, seconds, spent, step, n, noise, rate, used, setup, cpu_seconds, loop_seconds
    )


__all__ = ["CLIP_NORM", "GRAD_SAMPLE_MODE", "LEARNING_RATE", "TrainResult", "train_reward_model"]
