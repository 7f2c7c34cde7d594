"""The recipe tables of a tiny ``experiment`` grid that the end-to-end tests share (seconds per cell)."""

from __future__ import annotations


def tiny_grid_tables(*, eval_limit: int, clusters: int) -> str:
    """``[reward_models]``, ``[eval]``, ``[grpo]`` and ``[router]`` at test size."""
    return f"""
[reward_models]
pairs = 48
epochs = 2
public_pairs = 32

[eval]
limit = {eval_limit}

[grpo]
steps = 2
prompts_per_step = 2
group_size = 2

[router]
clusters = {clusters}
epochs = 20
calibration_items = 24
"""
