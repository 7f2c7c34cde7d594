"""The committed gRPC stubs are exactly what grpcio-tools generates from the committed .proto files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from secure_mor import protocol
from secure_mor.protocol import scoring

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("proto", [protocol.PROTO_FILE, scoring.PROTO_FILE])
def test_committed_stubs_match_a_fresh_generation(proto: str, tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable, "-m", "grpc_tools.protoc", "-I", str(ROOT),
            f"--python_out={tmp_path}", f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}",
            str(ROOT / proto),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    stem = Path(proto).stem
    for name in (f"{stem}_pb2.py", f"{stem}_pb2.pyi", f"{stem}_pb2_grpc.py"):
        fresh = (tmp_path / "secure_mor" / "protocol" / name).read_text()
        committed = (ROOT / "secure_mor" / "protocol" / name).read_text()
        assert fresh == committed, f"{name} is stale: regenerate it (see the header of {proto})"
