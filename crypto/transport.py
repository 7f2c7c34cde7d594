"""gRPC over mTLS with the federation CA: credentials from a kit, and the peer identity of a call.

A peer's identity is the common name of the certificate it presented during the TLS handshake; a
certificate from another CA never completes the handshake, so no call from it reaches a handler.
"""

from __future__ import annotations

from typing import Any

import grpc

from secure_mor.crypto.errors import KitError
from secure_mor.crypto.kit import TlsFiles


def _read(tls: TlsFiles) -> tuple[bytes, bytes, bytes]:
    try:
        return tls.ca.read_bytes(), tls.cert.read_bytes(), tls.key.read_bytes()
    except FileNotFoundError as error:
        raise KitError(f"mTLS file not found: {error.filename}") from None


def server_credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    """Server credentials that require and verify a client certificate from the federation CA."""
    ca, cert, key = _read(tls)
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)


def channel_credentials(tls: TlsFiles) -> grpc.ChannelCredentials:
    """Channel credentials presenting this party's certificate and trusting only the federation CA."""
    ca, cert, key = _read(tls)
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def message_options(max_bytes: int) -> list[tuple[str, Any]]:
    """Channel/server options that bound both message directions explicitly (gRPC's default is 4 MB in)."""
    return [("grpc.max_receive_message_length", max_bytes), ("grpc.max_send_message_length", max_bytes)]


def secure_channel(target: str, tls: TlsFiles, max_message_bytes: int = 16 * 1024 * 1024) -> grpc.Channel:
    """Open an mTLS channel to ``target`` (host:port) as the party whose ``tls`` files are given."""
    return grpc.secure_channel(target, channel_credentials(tls), options=message_options(max_message_bytes))


def peer_identity(context: grpc.ServicerContext) -> str | None:
    """Return the certificate CN of the caller, or ``None`` when the call did not come over mTLS."""
    found = context.auth_context().get("x509_common_name")
    names: list[bytes] = found if isinstance(found, list) else []
    return names[0].decode("utf-8", "replace") if len(names) == 1 else None
