"""The key holder over real gRPC, real mTLS and real TenSEAL on a loopback port: every policy rule."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest

from secure_mor import protocol as pb
from secure_mor.crypto.errors import LogIntegrityError
from secure_mor.crypto.keyholder import RunningKeyholder, start_keyholder
from secure_mor.crypto.provision import Federation
from secure_mor.crypto.signed_log import read_log
from secure_mor.crypto.signing import SigningKey, contribution_message

from .conftest import CLIENTS, fetch_public, keyholder_config, make_request, stub_for, uniform

RNG = np.random.default_rng(7)


def refused(call: Callable[[], object], code: grpc.StatusCode, fragment: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.code() == code, info.value.details()
    assert fragment in (info.value.details() or "")


def test_server_decrypts_the_fused_vector_and_the_log_records_it(
    federation: Federation, keyholder: RunningKeyholder
) -> None:
    public = fetch_public(federation, keyholder.port)
    scores = RNG.random((3, 50))
    weights = 1 / 3 + 0.5 * (RNG.dirichlet([2, 2, 2], 50).T - 1 / 3)  # (K, N), rows sum to 1, max < 0.75
    request = make_request(federation, public, "step-1", scores, weights)
    reply = stub_for(federation, "server", keyholder.port).DecryptAggregate(request, timeout=30)
    np.testing.assert_allclose(reply.values, (weights * scores).sum(axis=0), atol=1e-5)
    config = keyholder.service.config
    (entry,) = read_log(config.storage.decryption_log, {"keyholder": keyholder.service._log._signer.public})
    assert entry.line_hash == reply.log_entry_hash
    assert reply.log_seq == 0
    assert entry.payload["step_id"] == "step-1"
    assert entry.payload["count"] == 50
    assert entry.payload["contributors"] == [f"client:{n}" for n in CLIENTS]
    assert entry.payload["policy"] == {"k_min": 2, "w_max": 0.75}
    assert entry.payload["max_weight"] == pytest.approx(weights.max())


def test_any_allowlisted_party_gets_the_public_context_but_only_the_server_decrypts(
    federation: Federation, keyholder: RunningKeyholder
) -> None:
    public = fetch_public(federation, keyholder.port)  # as client:alice
    assert public.fingerprint == keyholder.service._secret.public.fingerprint
    request = make_request(federation, public, "s", RNG.random((3, 4)), uniform(3, 4))
    alice = stub_for(federation, "clients/alice", keyholder.port)
    refused(
        lambda: alice.DecryptAggregate(request, timeout=10),
        grpc.StatusCode.PERMISSION_DENIED,
        "only 'server' may decrypt",
    )


def test_refusals_each_have_a_precise_status_and_are_logged(
    federation: Federation, keyholder: RunningKeyholder
) -> None:
    public = fetch_public(federation, keyholder.port)
    server = stub_for(federation, "server", keyholder.port)
    scores = RNG.random((3, 8))

    def call(request: pb.DecryptAggregateRequest) -> Callable[[], object]:
        return lambda: server.DecryptAggregate(request, timeout=30)

    # fewer than k_min contributors
    two = make_request(federation, public, "few", scores[:1], np.ones((1, 8)), names=("alice",))
    refused(call(two), grpc.StatusCode.FAILED_PRECONDITION, "k_min = 2")
    # a weight above w_max
    lopsided = np.vstack([np.full(8, 0.8), np.full(8, 0.1), np.full(8, 0.1)])
    refused(
        call(make_request(federation, public, "heavy", scores, lopsided)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "w_max",
    )
    # a contributor whose signature is over another step id
    bad = make_request(federation, public, "sig", scores, uniform(3, 8))
    bad.contributors[1].signature = SigningKey.load(
        "client:bob", federation.root / "clients/bob/signing/ed25519.key"
    ).sign(contribution_message("another-step", bad.contributors[1].ciphertext_digest))
    refused(call(bad), grpc.StatusCode.PERMISSION_DENIED, "'client:bob': no valid signature")
    # a contributor the key holder does not pin
    unknown = make_request(federation, public, "who", scores, uniform(3, 8))
    unknown.contributors[2].identity = "client:mallory"
    refused(call(unknown), grpc.StatusCode.PERMISSION_DENIED, "no pinned signing key")
    # a ciphertext from another context
    other = make_request(federation, public, "ctx", scores, uniform(3, 8))
    other.aggregate.context_fingerprint = bytes(32)
    refused(call(other), grpc.StatusCode.FAILED_PRECONDITION, "another")
    # malformed: count differs from the vector, garbage chunk, bad step id
    mismatch = make_request(federation, public, "count", scores, uniform(3, 8))
    mismatch.count = 9
    refused(call(mismatch), grpc.StatusCode.INVALID_ARGUMENT, "count 9")
    garbage = make_request(federation, public, "garbage", scores, uniform(3, 8))
    garbage.aggregate.chunks[0] = b"\x00" * 1000
    refused(call(garbage), grpc.StatusCode.INVALID_ARGUMENT, "malformed ciphertext")
    refused(
        call(pb.DecryptAggregateRequest(step_id="bad step\n")), grpc.StatusCode.INVALID_ARGUMENT, "step_id"
    )
    refused(call(pb.DecryptAggregateRequest(step_id="x")), grpc.StatusCode.INVALID_ARGUMENT, "required")

    log = keyholder.service.config.storage
    text = log.service_log.read_text()
    for rule in ("k_min", "w_max", "signature", "contributor", "context", "malformed"):
        assert f"rule={rule}" in text, rule
    assert not log.decryption_log.read_bytes()  # nothing was decrypted


def test_oversize_messages_are_refused(federation: Federation, keyholder: RunningKeyholder) -> None:
    server = stub_for(federation, "server", keyholder.port)
    huge = pb.DecryptAggregateRequest(
        step_id="huge", aggregate=pb.EncryptedVector(chunks=[b"\x00" * (3 << 20)])
    )
    refused(lambda: server.DecryptAggregate(huge, timeout=30), grpc.StatusCode.RESOURCE_EXHAUSTED, "")
    many = pb.DecryptAggregateRequest(
        step_id="many", aggregate=pb.EncryptedVector(length=10**6), weights=pb.WeightSummary(), count=10**6
    )
    refused(
        lambda: server.DecryptAggregate(many, timeout=30), grpc.StatusCode.RESOURCE_EXHAUSTED, "max_values"
    )


def test_a_step_is_decrypted_once_also_after_a_restart(federation: Federation, tmp_path: Path) -> None:
    config = keyholder_config(federation, tmp_path)
    running = start_keyholder(config)
    try:
        public = fetch_public(federation, running.port)
        request = make_request(federation, public, "once", RNG.random((3, 5)), uniform(3, 5))
        server = stub_for(federation, "server", running.port)
        server.DecryptAggregate(request, timeout=30)
        refused(
            lambda: server.DecryptAggregate(request, timeout=30), grpc.StatusCode.ALREADY_EXISTS, "already"
        )
    finally:
        running.stop(None)
    restarted = start_keyholder(config)  # same secret context and log on disk
    try:
        assert fetch_public(federation, restarted.port).fingerprint == public.fingerprint
        server = stub_for(federation, "server", restarted.port)
        refused(
            lambda: server.DecryptAggregate(request, timeout=30), grpc.StatusCode.ALREADY_EXISTS, "'once'"
        )
        fresh = make_request(federation, public, "twice", RNG.random((3, 5)), uniform(3, 5))
        assert server.DecryptAggregate(fresh, timeout=30).log_seq == 1
    finally:
        restarted.stop(None)
    lines = config.storage.decryption_log.read_text().splitlines()
    assert [json.loads(line)["payload"]["step_id"] for line in lines] == ["once", "twice"]


def test_a_certificate_from_another_ca_is_refused_at_the_tls_layer(
    federation: Federation, foreign_federation: Federation, keyholder: RunningKeyholder
) -> None:
    stranger = stub_for(
        foreign_federation, "server", keyholder.port
    )  # trusts its own CA, presents its own cert
    refused(
        lambda: stranger.GetPublicContext(pb.GetPublicContextRequest(), timeout=10),
        grpc.StatusCode.UNAVAILABLE,
        "",
    )
    assert "refused" not in keyholder.service.config.storage.service_log.read_text()  # no handler ran


def test_an_unknown_common_name_is_refused(federation: Federation, tmp_path: Path) -> None:
    config = keyholder_config(federation, tmp_path, allowed_identities=("server", "client:alice"))
    running = start_keyholder(config)
    try:
        carol = stub_for(federation, "clients/carol", running.port)  # valid certificate, not on the allowlist
        refused(
            lambda: carol.GetPublicContext(pb.GetPublicContextRequest(), timeout=10),
            grpc.StatusCode.PERMISSION_DENIED,
            "'client:carol' is not on the allowlist",
        )
        assert "rule=identity" in config.storage.service_log.read_text()
    finally:
        running.stop(None)


def test_a_tampered_decryption_log_stops_the_key_holder_from_starting(
    federation: Federation, tmp_path: Path
) -> None:
    config = keyholder_config(federation, tmp_path)
    running = start_keyholder(config)
    try:
        public = fetch_public(federation, running.port)
        request = make_request(federation, public, "audited", RNG.random((3, 4)), uniform(3, 4))
        stub_for(federation, "server", running.port).DecryptAggregate(request, timeout=30)
    finally:
        running.stop(None)
    log = config.storage.decryption_log
    log.write_text(log.read_text().replace('"audited"', '"forgotten"'))
    with pytest.raises(LogIntegrityError, match=r"decryptions\.jsonl:1: .*does not verify"):
        start_keyholder(config)


def test_an_insecure_policy_is_announced_loudly(federation: Federation, tmp_path: Path) -> None:
    running = start_keyholder(keyholder_config(federation, tmp_path, k_min=1, w_max=1.0))
    running.stop(None)
    assert "INSECURE POLICY: k_min=1, w_max=1.0" in (tmp_path / "logs" / "service.log").read_text()
