"""The committed gRPC stubs are exactly what grpcio-tools generates from the committed .proto."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from secure_mor import protocol

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ("federation_pb2.py", "federation_pb2.pyi", "federation_pb2_grpc.py")


def test_committed_stubs_match_a_fresh_generation(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable, "-m", "grpc_tools.protoc", "-I", str(ROOT),
            f"--python_out={tmp_path}", f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}",
            str(ROOT / protocol.PROTO_FILE),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    for name in GENERATED:
        fresh = (tmp_path / "secure_mor" / "protocol" / name).read_text()
        committed = (ROOT / "secure_mor" / "protocol" / name).read_text()
        assert fresh == committed, f"{name} is stale: regenerate it (see the header of federation.proto)"


def test_messages_round_trip() -> None:
    request = protocol.DecryptAggregateRequest(
        step_id="s",
        aggregate=protocol.EncryptedVector(context_fingerprint=b"f" * 32, length=3, chunks=[b"abc"]),
        contributors=[
            protocol.Contribution(identity="client:a", ciphertext_digest=b"d" * 32, signature=b"s")
        ],
        weights=protocol.WeightSummary(max_weight=0.5, min_row_sum=1, max_row_sum=1),
        count=3,
    )
    assert protocol.DecryptAggregateRequest.FromString(request.SerializeToString()) == request
