"""The wire protocol every role speaks (gRPC over mTLS): one public module re-exporting the wire types.

``federation.proto`` is the source of truth; ``federation_pb2*.py`` and ``.pyi`` are generated from it by
grpcio-tools and committed (a test regenerates them and fails on drift). Conversions between these
messages and the crypto types live in ``secure_mor.crypto.wire``.
"""

from __future__ import annotations

import grpc

from secure_mor.protocol import federation_pb2_grpc as _grpc
from secure_mor.protocol.federation_pb2 import (
    CkksParameters,
    Contribution,
    DecryptAggregateRequest,
    DecryptAggregateResponse,
    EncryptedVector,
    GetPublicContextRequest,
    PublicContext,
    WeightSummary,
)
from secure_mor.protocol.federation_pb2_grpc import KeyHolderServicer, KeyHolderStub

PROTO_FILE = "secure_mor/protocol/federation.proto"
"""The proto's path relative to the repository root (its import path for protoc: ``-I <root>``)."""


def keyholder_stub(channel: grpc.Channel) -> KeyHolderStub:
    """Return a ``KeyHolder`` client stub on ``channel`` (a typed wrapper of the generated class)."""
    return KeyHolderStub(channel)  # type: ignore[no-untyped-call]


def add_keyholder_servicer(servicer: KeyHolderServicer, server: grpc.Server) -> None:
    """Register a ``KeyHolder`` servicer with a gRPC server (a typed wrapper of the generated function)."""
    _grpc.add_KeyHolderServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]


__all__ = [
    "PROTO_FILE",
    "CkksParameters",
    "Contribution",
    "DecryptAggregateRequest",
    "DecryptAggregateResponse",
    "EncryptedVector",
    "GetPublicContextRequest",
    "KeyHolderServicer",
    "KeyHolderStub",
    "PublicContext",
    "WeightSummary",
    "add_keyholder_servicer",
    "keyholder_stub",
]
