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
    from secure_mor.crypto.kit import KEYHOLDER_IDENTITY, load_trust
    from secure_mor.crypto.transport import secure_channel
    from secure_mor.protocol import keyholder_stub
    from secure_mor.server.config import load_server_config
    from secure_mor.server.federation import FederationService, serve_federation
    from secure_mor.server.fusion import fetch_public_context

    settings = load_server_config(config)
    federation = settings.federation
    pinned = load_trust(federation.trust)
    channel = secure_channel(federation.keyholder_address, federation.tls, settings.service.max_message_bytes)
    public = fetch_public_context(keyholder_stub(channel), pinned[KEYHOLDER_IDENTITY])
    service = FederationService(
        run_id=settings.run.run_id,
        allowed=settings.run.identities,
        public=public,
        pinned=pinned,
        heartbeat_seconds=settings.service.heartbeat_seconds,
    )
    running = serve_federation(
        service,
        listen=settings.service.listen,
        tls=federation.tls,
        max_message_bytes=settings.service.max_message_bytes,
        max_clients=settings.service.max_clients,
    )
    stop = threading.Event()

    def handle(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    console.print(f"serving on port {running.port}; allowed: {', '.join(settings.run.identities)}")
    online: tuple[str, ...] = ()
    while not stop.wait(1.0):
        now = service.online()
        if now != online:
            console.print(f"online: {', '.join(now) or 'none'}")
            online = now
    running.stop(2.0)
