"""Opacus' per-sample gradients are exact per-PAIR gradients, and a DP step moves weights as autograd says.

The privacy unit is one preference pair: chosen and rejected are one row (B, 2, …). If they were two
rows, Opacus would clip each half separately and the noise would be half of what ε assumes. These tests
compare Opacus with per-pair autograd (a loop over pairs) for both architectures, and check that a DP
step with noise 0 changes the trainable weights — LoRA matrices included — by exactly the average of
the clipped per-pair gradients (the peft/opacus corruption once reported must not pass silently).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import datasets
import pytest
import torch
from opacus import GradSampleModule, PrivacyEngine
from torch.utils.data import DataLoader

from secure_mor.client.bt_loss import BradleyTerryLoss
from secure_mor.client.compact import CompactRewardModel
from secure_mor.client.reward_model import RewardModel
from secure_mor.client.training import GRAD_SAMPLE_MODE

ROWS = 6


def per_pair_grads(
    module: torch.nn.Module, tensors: tuple[torch.Tensor, ...]
) -> list[dict[str, torch.Tensor]]:
    """Autograd gradient of the Bradley–Terry loss of each pair alone."""
    loss = BradleyTerryLoss(reduction="sum")
    out = []
    for i in range(tensors[0].shape[0]):
        module.zero_grad()
        loss(module(*(t[i : i + 1] for t in tensors))).backward()
        out.append({n: p.grad.detach().clone() for n, p in module.named_parameters() if p.grad is not None})
    module.zero_grad()
    return out


def norm(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    return torch.sqrt(torch.stack([(t**2).sum() for t in tensors]).sum())


def batch(model: RewardModel, pairs: datasets.Dataset) -> tuple[torch.Tensor, ...]:
    return tuple(model.encoder.pairs(pairs.select(range(ROWS))).tensors)


@pytest.mark.parametrize("arch", ["compact", "lora"])
def test_opacus_grad_sample_equals_per_pair_autograd(
    arch: str, request: pytest.FixtureRequest, pairs
) -> None:
    model: RewardModel = request.getfixturevalue(arch)
    tensors = batch(model, pairs)
    expected = per_pair_grads(model.module, tensors)
    wrapped = GradSampleModule(model.module, loss_reduction="sum")
    BradleyTerryLoss(reduction="sum")(wrapped(*tensors)).backward()
    checked = 0
    for name, parameter in model.module.named_parameters():
        if not parameter.requires_grad:
            continue
        grad_sample: torch.Tensor = parameter.grad_sample  # type: ignore[attr-defined]
        assert grad_sample.shape == (ROWS, *parameter.shape), name  # one row per PAIR
        for i in range(ROWS):
            torch.testing.assert_close(grad_sample[i], expected[i][name], atol=1e-6, rtol=1e-4)
        checked += 1
    assert checked > 0
    if arch == "lora":
        names = [n for n, p in model.module.named_parameters() if p.requires_grad]
        assert any("lora_A" in n for n in names)
        assert any("lora_B" in n for n in names)
        assert all("lora_" in n or n.startswith("value_head") for n in names)
    wrapped._close()


@pytest.mark.parametrize("frozen", [False, True], ids=["whole-model", "public-encoders-frozen"])
def test_ghost_clipping_norms_equal_per_pair_autograd_norms(
    compact: RewardModel, pairs, frozen: bool
) -> None:
    tensors = batch(compact, pairs)
    module = copy.deepcopy(compact.module)
    assert isinstance(module, CompactRewardModel)
    if frozen:  # as in private training after the public start: only the Linear layers train
        module.freeze_encoders()
    expected = per_pair_grads(module, tensors)
    if frozen:
        trainable = ("image_proj", "context", "answer_proj", "joint", "head")
        assert all(name.startswith(trainable) for name in expected[0])
    norms = torch.stack([norm(grads.values()) for grads in expected])
    engine = PrivacyEngine(accountant="prv")
    loader = DataLoader(torch.utils.data.TensorDataset(*tensors), batch_size=ROWS)
    model, _optimizer, criterion, _ = engine.make_private(
        module=module,
        optimizer=torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=1.0),
        criterion=BradleyTerryLoss(),
        data_loader=loader,
        noise_multiplier=0.0,
        max_grad_norm=1e6,
        poisson_sampling=False,
        grad_sample_mode="ghost",
    )
    criterion(model(*tensors)).backward()
    torch.testing.assert_close(model.per_sample_gradient_norms, norms, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("arch", ["compact", "lora"])
def test_dp_step_moves_weights_by_the_clipped_average_of_per_pair_gradients(
    arch: str, request: pytest.FixtureRequest, pairs
) -> None:
    model: RewardModel = request.getfixturevalue(arch)
    tensors = batch(model, pairs)
    clip = 0.05  # small enough that every pair is clipped, so clipping is exercised
    expected_grads = per_pair_grads(model.module, tensors)
    names = [n for n, p in model.module.named_parameters() if p.requires_grad]
    norms = [norm(g[n] for n in names) for g in expected_grads]
    factors = [min(1.0, clip / (float(norm) + 1e-6)) for norm in norms]
    assert max(factors) < 1.0
    before = {n: p.detach().clone() for n, p in model.module.named_parameters() if p.requires_grad}
    lr = 0.5
    engine = PrivacyEngine(accountant="prv")
    mode = GRAD_SAMPLE_MODE[model.architecture]
    trainable = [p for p in model.module.parameters() if p.requires_grad]
    made = engine.make_private(
        module=model.module,
        optimizer=torch.optim.SGD(trainable, lr=lr),
        criterion=BradleyTerryLoss(),
        data_loader=DataLoader(torch.utils.data.TensorDataset(*tensors), batch_size=ROWS),
        noise_multiplier=0.0,
        max_grad_norm=clip,
        poisson_sampling=False,
        grad_sample_mode=mode,
    )
    if mode == "ghost":
        dp_model, optimizer, criterion, _ = made
    else:
        dp_model, optimizer, _ = made
        criterion = BradleyTerryLoss()
    criterion(dp_model(*tensors)).backward()
    optimizer.step()
    moved = 0
    for name, parameter in model.module.named_parameters():
        if name not in before:
            continue
        average = sum(f * g[name] for f, g in zip(factors, expected_grads, strict=True)) / ROWS
        torch.testing.assert_close(parameter.detach(), before[name] - lr * average, atol=1e-6, rtol=1e-4)
        moved += int(not torch.equal(parameter.detach(), before[name]))
    assert moved > 0
    if arch == "lora":  # LoRA B starts at zero; the step must move it (A gets a zero gradient at step 1)
        assert any(
            "lora_B" in n and not torch.equal(p.detach(), before[n])
            for n, p in model.module.named_parameters()
            if n in before
        )
