"""The Bradley–Terry pairwise loss, −log σ(r_chosen − r_rejected), as an Opacus-compatible criterion."""

from __future__ import annotations

import torch
from torch import nn


class BradleyTerryLoss(nn.Module):
    """Loss of rewards (B, 2) = (chosen, rejected); ``reduction`` 'mean', 'sum' or 'none' (per pair).

    Opacus' ghost clipping sets ``reduction = "none"`` to get the per-pair losses, so it is an attribute.
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, rewards: torch.Tensor) -> torch.Tensor:
        """−log σ(r_c − r_r), reduced."""
        per_pair = nn.functional.softplus(rewards[:, 1] - rewards[:, 0])  # (B,)
        if self.reduction == "none":
            return per_pair
        if self.reduction == "sum":
            return per_pair.sum()
        return per_pair.mean()
