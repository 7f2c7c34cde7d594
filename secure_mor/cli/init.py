"""``secure-mor init``: issue the federation CA and write every party's startup kit."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from secure_mor.cli.app import console
from secure_mor.crypto.provision import create_federation


def _names(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


def init_command(
    directory: Path = typer.Argument(
        ..., help="Folder to write the CA and the kits to (created if missing)."
    ),
    clients: str = typer.Option(
        ..., "--clients", help="Comma-separated client names, e.g. alice,bob,carol (a-z, 0-9, '-', '_')."
    ),
    server_host: str = typer.Option(
        "localhost",
        "--server-host",
        help="Host name(s)/address(es) of the server, comma-separated: its SANs.",
    ),
    keyholder_host: str = typer.Option(
        "localhost", "--keyholder-host", help="Host name(s)/address(es) of the key holder: its SANs."
    ),
    server_port: int = typer.Option(50050, "--server-port", help="Port the server listens on."),
    keyholder_port: int = typer.Option(50051, "--keyholder-port", help="Port the key holder listens on."),
    force: bool = typer.Option(
        False, "--force", help="Replace an existing kit in DIRECTORY (its keys and logs are deleted)."
    ),
) -> None:
    """Create a federation: a CA and one startup kit per party (server, key holder, each client).

    Each kit holds the party's certificate and private key (0600), the CA certificate, an Ed25519 key pair,

    the signing keys it pins (trust.toml) and a TOML config with secure defaults. No key is ever printed.

    Copy each kit to its party over a secure channel; keep ca/ca.key offline.
    """
    federation = create_federation(
        directory,
        _names(clients),
        server_hosts=_names(server_host),
        keyholder_hosts=_names(keyholder_host),
        server_port=server_port,
        keyholder_port=keyholder_port,
        force=force,
    )
    table = Table(title=f"federation kit in {federation.root}")
    for column in ("identity", "kit", "config", "certificate expires"):
        table.add_column(column)
    for party in federation.parties:
        table.add_row(
            party.identity,
            str(party.folder.relative_to(federation.root)),
            party.config.name,
            f"{party.expires:%Y-%m-%d}",
        )
    console.print(table)
    console.print(f"CA certificate: {federation.ca_cert}; keep {federation.root / 'ca' / 'ca.key'} offline.")
