"""Opening the server's side of the federation from its config: the key holder, then the endpoint."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from secure_mor import protocol as pb
from secure_mor.anchors import ClientJoined
from secure_mor.crypto.ckks import PublicContext
from secure_mor.crypto.kit import KEYHOLDER_IDENTITY, load_trust
from secure_mor.crypto.transport import secure_channel
from secure_mor.server.config import ServerConfig
from secure_mor.server.errors import ServerError
from secure_mor.server.federation import FederationService, RunningFederation, serve_federation
from secure_mor.server.fusion import fetch_public_context


@dataclass(frozen=True)
class Endpoint:
    """The running Federation endpoint, the verified public context and the key holder's stub."""

    running: RunningFederation
    public: PublicContext
    keyholder: pb.KeyHolderStub

    @property
    def service(self) -> FederationService:
        """The Federation servicer (roster, scoring, calibration)."""
        return self.running.service


def open_endpoint(config: ServerConfig, on_join: Callable[[ClientJoined], None] | None = None) -> Endpoint:
    """Verify the key holder's public context against its pinned key, then serve the Federation endpoint.

    ``on_join`` is called with each accepted Hello before the client joins (the run's anchors log).
    """
    federation = config.federation
    pinned = load_trust(federation.trust)
    if KEYHOLDER_IDENTITY not in pinned:
        raise ServerError(f"{federation.trust}: no pinned signing key for {KEYHOLDER_IDENTITY!r}")
    channel = secure_channel(federation.keyholder_address, federation.tls, config.service.max_message_bytes)
    stub = pb.keyholder_stub(channel)
    public = fetch_public_context(stub, pinned[KEYHOLDER_IDENTITY])
    service = FederationService(
        run_id=config.run.run_id,
        allowed=config.run.identities,
        public=public,
        pinned=pinned,
        heartbeat_seconds=config.service.heartbeat_seconds,
        on_join=on_join,
    )
    running = serve_federation(
        service,
        listen=config.service.listen,
        tls=federation.tls,
        max_message_bytes=config.service.max_message_bytes,
        max_clients=config.service.max_clients,
    )
    return Endpoint(running, public, stub)
