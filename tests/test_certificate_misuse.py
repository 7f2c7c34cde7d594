"""Certificate misuse over real mTLS on loopback: every case is refused, no handler runs, nothing changes.

Covered here: an expired and a not-yet-valid certificate signed by the federation CA itself (on both
services, and presented by a server to a client), a party presenting the key holder's certificate as a
client (it has no clientAuth usage), and a peer that serves with a client's certificate. Other misuse is
tested beside its service: another CA's certificate (tests/crypto/test_keyholder_service.py,
tests/server/test_federation.py, tests/client/test_agent.py), the server's certificate joining as a client
(tests/server/test_federation.py), a client's certificate calling ``DecryptAggregate``
(tests/crypto/test_keyholder_service.py).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from secure_mor import protocol as pb
from secure_mor.crypto.ckks import PublicContext
from secure_mor.crypto.keyholder import RunningKeyholder, start_keyholder
from secure_mor.crypto.kit import TlsFiles, load_trust
from secure_mor.crypto.provision import Federation, create_federation
from secure_mor.crypto.transport import secure_channel
from secure_mor.protocol import scoring as sp
from secure_mor.server.federation import FederationService, RunningFederation, serve_federation

from .crypto.conftest import CLIENTS, fetch_public, keyholder_config, kit_tls

pytestmark = pytest.mark.timeout(60)
NOW = dt.datetime.now(dt.UTC)
DAY = dt.timedelta(days=1)


def forge(
    federation: Federation,
    folder: Path,
    identity: str,
    *,
    valid: tuple[dt.datetime, dt.datetime],
    server_auth: bool = False,
    client_auth: bool = True,
    hosts: tuple[str, ...] = (),
) -> TlsFiles:
    """A certificate for ``identity`` signed by the federation's own CA, with the given validity."""
    ca_cert = x509.load_pem_x509_certificate((federation.root / "ca" / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((federation.root / "ca" / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] * server_auth + [ExtendedKeyUsageOID.CLIENT_AUTH] * client_auth
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if hosts:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), *map(_ip, hosts)]), critical=False
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "party.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "party.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return TlsFiles(ca=federation.root / "ca" / "ca.crt", cert=folder / "party.crt", key=folder / "party.key")


def _ip(host: str) -> x509.GeneralName:
    return x509.IPAddress(ipaddress.ip_address(host))


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return create_federation(tmp_path_factory.mktemp("misuse") / "fed", CLIENTS)


@pytest.fixture(scope="module")
def keyholder(federation: Federation, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningKeyholder]:
    running = start_keyholder(keyholder_config(federation, tmp_path_factory.mktemp("keyholder")))
    yield running
    running.stop(None)


@pytest.fixture(scope="module")
def public(federation: Federation, keyholder: RunningKeyholder) -> PublicContext:
    return fetch_public(federation, keyholder.port)


def serve(federation: Federation, public: PublicContext, tls: TlsFiles) -> RunningFederation:
    service = FederationService(
        run_id="misuse",
        allowed=[f"client:{n}" for n in CLIENTS],
        public=public,
        pinned=load_trust(federation.root / "server" / "trust.toml"),
    )
    return serve_federation(service, listen="127.0.0.1:0", tls=tls, max_message_bytes=1 << 20, max_clients=4)


@pytest.fixture
def endpoint(federation: Federation, public: PublicContext) -> Iterator[RunningFederation]:
    running = serve(federation, public, kit_tls(federation.root, "server"))
    yield running
    running.stop(None)


def call_keyholder(port: int, tls: TlsFiles) -> grpc.StatusCode:
    channel = secure_channel(f"127.0.0.1:{port}", tls)
    try:
        pb.keyholder_stub(channel).GetPublicContext(pb.GetPublicContextRequest(), timeout=10)
    except grpc.RpcError as error:
        return error.code()
    finally:
        channel.close()
    return grpc.StatusCode.OK


def join(port: int, tls: TlsFiles, public: PublicContext, identity: str) -> grpc.StatusCode:
    """Open a Federation stream and say Hello as ``identity``; return the status (OK: a roster came)."""
    channel = secure_channel(f"127.0.0.1:{port}", tls)
    hello = sp.Hello(identity=identity, protocol_version=1, context_fingerprint=public.fingerprint)
    call = sp.federation_stub(channel).Connect(iter([sp.ClientMessage(hello=hello)]), timeout=10)
    try:
        next(call)
    except grpc.RpcError as error:
        return error.code()
    finally:
        call.cancel()
        channel.close()
    return grpc.StatusCode.OK


def assert_nobody_online(endpoint: RunningFederation, seconds: float = 15.0) -> None:
    """Wait for streams of earlier calls to unregister (it happens after the caller cancels), then check."""
    deadline = time.monotonic() + seconds
    while endpoint.service.online() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert endpoint.service.online() == ()


def refusals(keyholder: RunningKeyholder) -> int:
    return keyholder.service.config.storage.service_log.read_text().count(" refused ")


MISUSED = {
    "expired": (NOW - 30 * DAY, NOW - DAY),
    "not yet valid": (NOW + DAY, NOW + 30 * DAY),
}


@pytest.mark.parametrize("case", sorted(MISUSED))
def test_a_client_certificate_outside_its_validity_is_refused_by_both_services(
    federation: Federation,
    keyholder: RunningKeyholder,
    endpoint: RunningFederation,
    public: PublicContext,
    tmp_path: Path,
    case: str,
) -> None:
    tls = forge(federation, tmp_path, "client:alice", valid=MISUSED[case])
    before = refusals(keyholder)
    assert call_keyholder(keyholder.port, tls) == grpc.StatusCode.UNAVAILABLE  # the handshake fails
    assert join(endpoint.port, tls, public, "client:alice") == grpc.StatusCode.UNAVAILABLE
    assert refusals(keyholder) == before  # no handler ran
    assert_nobody_online(endpoint)
    # The same identity with a valid certificate from the same CA gets in: the validity was the reason.
    valid = forge(federation, tmp_path / "valid", "client:alice", valid=(NOW - DAY, NOW + DAY))
    assert call_keyholder(keyholder.port, valid) == grpc.StatusCode.OK
    assert join(endpoint.port, valid, public, "client:alice") == grpc.StatusCode.OK


def test_a_client_presenting_the_key_holders_certificate_is_refused_at_the_tls_layer(
    federation: Federation, keyholder: RunningKeyholder, endpoint: RunningFederation, public: PublicContext
) -> None:
    """The key holder's certificate has serverAuth only: no service accepts it from a client."""
    tls = kit_tls(federation.root, "keyholder")
    before = refusals(keyholder)
    assert call_keyholder(keyholder.port, tls) == grpc.StatusCode.UNAVAILABLE
    assert join(endpoint.port, tls, public, "keyholder") == grpc.StatusCode.UNAVAILABLE
    assert refusals(keyholder) == before
    assert_nobody_online(endpoint)


def test_a_certificate_without_client_auth_is_refused_even_with_a_client_name(
    federation: Federation,
    keyholder: RunningKeyholder,
    endpoint: RunningFederation,
    public: PublicContext,
    tmp_path: Path,
) -> None:
    tls = forge(
        federation,
        tmp_path,
        "client:alice",
        valid=(NOW - DAY, NOW + DAY),
        server_auth=True,
        client_auth=False,
    )
    assert call_keyholder(keyholder.port, tls) == grpc.StatusCode.UNAVAILABLE
    assert join(endpoint.port, tls, public, "client:alice") == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("case", ["expired server certificate", "client certificate"])
def test_a_client_refuses_a_server_with_an_expired_or_a_client_certificate(
    federation: Federation, public: PublicContext, tmp_path: Path, case: str
) -> None:
    if case == "expired server certificate":
        tls = forge(
            federation,
            tmp_path,
            "server",
            valid=MISUSED["expired"],
            server_auth=True,
            hosts=("127.0.0.1", "::1"),
        )
    else:  # bob's certificate: clientAuth only and no subjectAltName, so it cannot pass as a server
        tls = kit_tls(federation.root, "clients/bob")
    impostor = serve(federation, public, tls)
    try:
        alice = kit_tls(federation.root, "clients/alice")
        assert join(impostor.port, alice, public, "client:alice") == grpc.StatusCode.UNAVAILABLE
        assert impostor.service.online() == ()
    finally:
        impostor.stop(None)


def test_the_forged_server_certificate_is_accepted_when_valid(
    federation: Federation, public: PublicContext, tmp_path: Path
) -> None:
    """The control for the expired case above: the same forgery, in date, passes — expiry was the reason."""
    tls = forge(
        federation,
        tmp_path,
        "server",
        valid=(NOW - DAY, NOW + DAY),
        server_auth=True,
        hosts=("127.0.0.1", "::1"),
    )
    genuine = serve(federation, public, tls)
    try:
        alice = kit_tls(federation.root, "clients/alice")
        assert join(genuine.port, alice, public, "client:alice") == grpc.StatusCode.OK
    finally:
        genuine.stop(None)
