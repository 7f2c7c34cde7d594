"""``secure-mor server …``: the aligning party — the Federation endpoint and federated GRPO training."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import typer

from secure_mor.cli.app import console

app = typer.Typer(
    help="Run the aligning party: the Federation service and GRPO on the fused reward.", no_args_is_help=True
)


@app.command("train")
def train(
    config: Path = typer.Option(
        ..., "--config", "-c", help="The server's server.toml (from secure-mor init)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run folder's last checkpoint."),
) -> None:
    """Wait for clients, fit the router, run GRPO on the fused reward, save the policy and evaluate it."""
    from secure_mor.server.config import load_server_config  # torch, TRL: load only when run
    from secure_mor.server.training import FederatedAlignment

    settings = load_server_config(config)
    console.print(
        f"run {settings.run.run_id!r}: routing {settings.run.routing}, {settings.grpo.steps} GRPO steps, "
        f"clients {', '.join(settings.run.clients) or '–'}; waiting for ≥ {settings.secure.k_min} to join"
    )
    result = FederatedAlignment(settings).run(resume=resume)
    console.print(f"trained {result.steps} steps in {result.seconds:.0f} s; outputs in {result.run_dir}")
    if result.evaluation is not None:
        for kind, score in result.evaluation.scores.items():
            console.print(
                f"  {kind:8} {score.accuracy:6.1%}  (text-only baseline {score.baseline_accuracy:.1%})"
            )


@app.command("serve")
def serve(
    config: Path = typer.Option(
        ..., "--config", "-c", help="The server's server.toml (from secure-mor init)."
    ),
) -> None:
    """Serve the Federation endpoint and show clients as they join and leave, until Ctrl-C."""
    from secure_mor.server.config import load_server_config
    from secure_mor.server.endpoint import open_endpoint

    settings = load_server_config(config)
    endpoint = open_endpoint(settings)
    stop = threading.Event()

    def handle(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    console.print(f"serving on port {endpoint.running.port}; allowed: {', '.join(settings.run.identities)}")
    online: tuple[str, ...] = ()
    while not stop.wait(1.0):
        now = endpoint.service.online()
        if now != online:
            console.print(f"online: {', '.join(now) or 'none'}")
            online = now
    endpoint.running.stop(2.0)
