"""``secure-mor keyholder …``: run the key holder (the only party holding the CKKS secret key)."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType

import typer

from secure_mor.cli.app import console
from secure_mor.config import load_config
from secure_mor.crypto.keyholder import start_keyholder
from secure_mor.crypto.keyholder_config import KeyholderConfig

app = typer.Typer(
    help="Run the key holder: the CKKS secret key, its decryption policy and log.", no_args_is_help=True
)


@app.command("serve")
def serve(
    config: Path = typer.Option(
        ...,
        "--config",
        "-c",
        help="The key holder's keyholder.toml (from its kit written by `secure-mor init`).",
    ),
) -> None:
    """Serve GetPublicContext and policy-checked DecryptAggregate over mTLS until interrupted.

    The first start generates the CKKS key pair into storage.secret_context (0600).

    Refusals go to storage.service_log; each decryption is appended to the signed decryption log first.
    """
    settings = load_config(KeyholderConfig, config)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    running = start_keyholder(settings)
    console.print(f"key holder serving on port {running.port}; Ctrl-C or SIGTERM stops it")
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        running.stop(grace=5.0)
        console.print("key holder stopped")
