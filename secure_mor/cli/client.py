"""``secure-mor client …``: train the client's DP reward model; run its encrypted scoring agent."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from secure_mor.cli.app import console
from secure_mor.cli.progress import progress_bar

app = typer.Typer(
    help="A data owner: train a reward model under DP; score the server's rollouts, encrypted.",
    no_args_is_help=True,
)

CONFIG = typer.Option(..., "--config", "-c", help="The client's client.toml (from its kit; see README).")


@app.command("train-rm")
def train_rm(
    config: Path = CONFIG,
    epsilon: str | None = typer.Option(
        None, "--epsilon", help="ε of this run (default privacy.epsilon); 'inf' trains WITHOUT DP."
    ),
    out: Path | None = typer.Option(None, "--out", help="Model folder (default reward_model.out)."),
) -> None:
    """Train the reward model under DP-SGD, report held-out pairwise accuracy, time and ε spent.

    A run that would exceed privacy.budget is refused before training; every run is recorded in the
    signed privacy ledger (privacy.ledger).
    """
    from secure_mor.client.config import load_client_config
    from secure_mor.client.run import train_from_config
    from secure_mor.errors import ConfigError

    settings = load_client_config(config)
    value = None
    if epsilon is not None:
        try:
            value = float(epsilon)
        except ValueError:
            raise ConfigError(f"--epsilon: expected a number > 0 or 'inf', found {epsilon!r}") from None
        if not value > 0:
            raise ConfigError(f"--epsilon: expected a number > 0 or 'inf', found {epsilon!r}")
    if value is not None and math.isinf(value):
        console.print("[bold yellow]WARNING:[/] --epsilon inf trains WITHOUT differential privacy; "
                      "the model is marked non-private and the scoring agent refuses it.")  # fmt: skip
    with progress_bar() as bar:
        task = bar.add_task("train-rm", total=None, status="")

        def report(step: int, total: int, loss: float) -> None:
            bar.update(task, completed=step, total=total, status=f"loss {loss:.3f}")

        result, path = train_from_config(settings, epsilon=value, out=out, progress=report)
    eps = (
        "∞ (no DP)"
        if math.isinf(result.epsilon)
        else f"{result.epsilon:.3f} (δ = {settings.privacy.delta:g})"
    )
    console.print(
        f"{result.model.architecture} reward model → {path}\n"
        f"held-out pairwise accuracy {result.accuracy:.3f}; {result.steps} steps in {result.seconds:.1f} s; "
        f"ε spent {eps}; noise multiplier {result.noise_multiplier:.3f}, "
        f"sample rate {result.sample_rate:.4f}, grad-sample mode {result.grad_sample_mode}"
    )
    if result.model.settings.get("public_init"):
        console.print(
            f"started from the public pretraining {result.model.settings['public_init']} (no ε cost)"
        )


@app.command("join")
def join(
    config: Path = CONFIG,
    model: Path | None = typer.Option(
        None, "--model", help="Reward model folder (default reward_model.out)."
    ),
) -> None:
    """Connect out to the server over mTLS and score its rollouts, encrypted, until SIGINT/SIGTERM.

    The key holder's public context is verified against the pinned key first; an unverified one stops
    the agent. Lost connections are retried with exponential backoff.
    """
    import logging
    import signal
    import threading
    from types import FrameType

    from secure_mor.client.agent import ScoringAgent
    from secure_mor.client.config import load_client_config
    from secure_mor.client.reward_model import load_reward_model

    settings = load_client_config(config)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.agent.threads:
        import torch

        torch.set_num_threads(settings.agent.threads)
    reward_model = load_reward_model(model or settings.reward_model.out)
    stop = threading.Event()
    agent = ScoringAgent(settings, reward_model, stop)

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    console.print(
        f"{settings.federation.identity} joining {settings.federation.server_address} "
        f"({reward_model.architecture} reward model, ε = {reward_model.epsilon}); Ctrl-C or SIGTERM stops it"
    )
    try:
        agent.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    console.print(f"stopped after {agent.tasks_scored} scored task(s)")
