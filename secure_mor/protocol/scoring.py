"""Typed access to the server ↔ client ``Federation`` service of ``scoring.proto`` (wire types re-exported).

``scoring.proto`` is the source of truth; ``scoring_pb2*.py`` and ``.pyi`` are generated from it and
committed (``tests/test_protocol_stubs.py`` regenerates them and fails on drift).
"""

from __future__ import annotations

import grpc

from secure_mor.protocol import scoring_pb2 as _pb2
from secure_mor.protocol.parsing import register, tolerant
from secure_mor.protocol.scoring_pb2 import (
    CalibrationItem,
    CalibrationReply,
    CalibrationRequest,
    ClientMessage,
    ClusterAccuracy,
    Error,
    Heartbeat,
    Hello,
    LedgerHead,
    Rollout,
    Roster,
    ScoreReply,
    ScoringTask,
    ServerMessage,
)
from secure_mor.protocol.scoring_pb2_grpc import FederationServicer, FederationStub

PROTO_FILE = "secure_mor/protocol/scoring.proto"
"""The proto's path relative to the repository root (its import path for protoc: ``-I <root>``)."""
PROTOCOL_VERSION = 1


def federation_stub(channel: grpc.Channel) -> FederationStub:
    """Return a ``Federation`` client stub on ``channel`` (a typed wrapper of the generated class)."""
    return FederationStub(channel)  # type: ignore[no-untyped-call]


def add_federation_servicer(servicer: FederationServicer, server: grpc.Server) -> None:
    """Register a ``Federation`` servicer; stream messages that do not parse reach it as ``Unparsable``."""
    register(
        server,
        _pb2.DESCRIPTOR.services_by_name["Federation"],
        {
            "Connect": grpc.stream_stream_rpc_method_handler(
                servicer.Connect,
                request_deserializer=tolerant(ClientMessage),
                response_serializer=ServerMessage.SerializeToString,
            )
        },
    )


__all__ = [
    "PROTOCOL_VERSION",
    "PROTO_FILE",
    "CalibrationItem",
    "CalibrationReply",
    "CalibrationRequest",
    "ClientMessage",
    "ClusterAccuracy",
    "Error",
    "FederationServicer",
    "FederationStub",
    "Heartbeat",
    "Hello",
    "LedgerHead",
    "Rollout",
    "Roster",
    "ScoreReply",
    "ScoringTask",
    "ServerMessage",
    "add_federation_servicer",
    "federation_stub",
]
