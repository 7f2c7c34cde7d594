"""Benchmark: what mTLS costs on gRPC, the same call with the same payload, mTLS vs insecure, loopback.

One echo method (bytes in, bytes out) is served twice in this process: on an mTLS port with the
federation's credentials (``secure_mor.crypto.transport``, a kit from ``create_federation``) and on an
insecure port; a client sends the same payload (default 330 kB, one CKKS ciphertext) on a warm channel to
each, alternating, and the median round trip of each is reported with their ratio. Channel set-up (the
TLS handshake) is reported separately: it happens once per connection, not per call.

    .venv/bin/python benchmarks/grpc_transport.py [--calls 200] [--payload 330000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from secure_mor.crypto.kit import TlsFiles
from secure_mor.crypto.provision import create_federation
from secure_mor.crypto.transport import message_options, secure_channel, server_credentials

METHOD = "/bench.Echo/Echo"


def tls(root: Path, party: str) -> TlsFiles:
    folder = root / party / "tls"
    return TlsFiles(ca=folder / "ca.crt", cert=folder / "party.crt", key=folder / "party.key")


def echo_server(root: Path) -> tuple[grpc.Server, int, int]:
    """One server with the echo method on an mTLS port and an insecure port."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=message_options(16 << 20))
    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(
        lambda request, context: request
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", {"Echo": handler}),))
    secure = server.add_secure_port("127.0.0.1:0", server_credentials(tls(root, "server")))
    insecure = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, secure, insecure


def round_trips(call: Any, payload: bytes, calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        call(payload, timeout=30)
        times.append(time.perf_counter() - started)
    return times


def measure(calls: int, size: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        root = create_federation(Path(folder) / "fed", ["alice"]).root
        server, secure_port, insecure_port = echo_server(root)
        try:
            started = time.perf_counter()
            secure = secure_channel(f"localhost:{secure_port}", tls(root, "clients/alice"))
            grpc.channel_ready_future(secure).result(timeout=30)
            handshake = time.perf_counter() - started
            started = time.perf_counter()
            insecure = grpc.insecure_channel(f"127.0.0.1:{insecure_port}", options=message_options(16 << 20))
            grpc.channel_ready_future(insecure).result(timeout=30)
            connect = time.perf_counter() - started
            payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
            secure_call: Any = secure.unary_unary(METHOD)
            insecure_call: Any = insecure.unary_unary(METHOD)
            round_trips(secure_call, payload, 10)  # warm both
            round_trips(insecure_call, payload, 10)
            mtls: list[float] = []
            plain: list[float] = []
            for _ in range(calls // 10):  # alternate in blocks so drift hits both alike
                mtls += round_trips(secure_call, payload, 10)
                plain += round_trips(insecure_call, payload, 10)
            secure.close()
            insecure.close()
        finally:
            server.stop(None)
    return {
        "payload_bytes": size,
        "calls": len(mtls),
        "mtls_ms": 1e3 * statistics.median(mtls),
        "insecure_ms": 1e3 * statistics.median(plain),
        "ratio": statistics.median(mtls) / statistics.median(plain),
        "mtls_connect_ms": 1e3 * handshake,
        "insecure_connect_ms": 1e3 * connect,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=200, help="calls per transport (multiple of 10)")
    parser.add_argument("--payload", type=int, default=330_000, help="request and response bytes")
    parser.add_argument(
        "--json", type=Path, help="also write the figures as JSON here (benchmarks/run_all.py)"
    )
    args = parser.parse_args()
    row = measure(args.calls, args.payload)
    print("| payload | calls | mTLS (ms) | insecure (ms) | mTLS / insecure | connect: mTLS / insecure (ms) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    print(
        f"| {row['payload_bytes']:,} B | {row['calls']} | {row['mtls_ms']:.2f} | {row['insecure_ms']:.2f} "
        f"| {row['ratio']:.2f} | {row['mtls_connect_ms']:.1f} / {row['insecure_connect_ms']:.1f} |"
    )
    if args.json:
        args.json.write_text(json.dumps({"rows": [row]}, indent=2))


if __name__ == "__main__":
    main()
