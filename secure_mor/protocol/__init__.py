"""The wire protocol every role speaks (gRPC over mTLS): one public module re-exporting the wire types.

``federation.proto`` is the source of truth; ``federation_pb2*.py`` and ``.pyi`` are generated from it by
grpcio-tools and committed (a test regenerates them and fails on drift). Conversions between these
messages and the crypto types live in ``secure_mor.crypto.wire``.
"""

from __future__ import annotations

import grpc

from secure_mor.protocol import federation_pb2 as _pb2
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
from secure_mor.protocol.parsing import Unparsable, excerpt, register, tolerant

PROTO_FILE = "secure_mor/protocol/federation.proto"
"""The proto's path relative to the repository root (its import path for protoc: ``-I <root>``)."""


def keyholder_stub(channel: grpc.Channel) -> KeyHolderStub:
    """Return a ``KeyHolder`` client stub on ``channel`` (a typed wrapper of the generated class)."""
    return KeyHolderStub(channel)  # type: ignore[no-untyped-call]


def add_keyholder_servicer(servicer: KeyHolderServicer, server: grpc.Server) -> None:
    """Register a ``KeyHolder`` servicer; requests that do not parse reach it as ``Unparsable``."""
    register(
        server,
        _pb2.DESCRIPTOR.services_by_name["KeyHolder"],
        {
            "GetPublicContext": grpc.unary_unary_rpc_method_handler(
                servicer.GetPublicContext,
                request_deserializer=tolerant(GetPublicContextRequest),
                response_serializer=PublicContext.SerializeToString,
            ),
            "DecryptAggregate": grpc.unary_unary_rpc_method_handler(
                servicer.DecryptAggregate,
                request_deserializer=tolerant(DecryptAggregateRequest),
                response_serializer=DecryptAggregateResponse.SerializeToString,
            ),
        },
    )


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
    "Unparsable",
    "WeightSummary",
    "add_keyholder_servicer",
    "excerpt",
    "keyholder_stub",
]
