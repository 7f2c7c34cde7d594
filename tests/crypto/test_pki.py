"""``secure-mor init``: the CA, each party's certificate, key files and modes, trust files, configs."""

from __future__ import annotations

import ipaddress
import stat
import tomllib
from pathlib import Path

import pytest
import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from secure_mor.cli import main
from secure_mor.config import load_config
from secure_mor.crypto.errors import KitError
from secure_mor.crypto.keyholder_config import KeyholderConfig
from secure_mor.crypto.kit import FederationConfig, load_trust
from secure_mor.crypto.provision import Federation, create_federation
from secure_mor.crypto.signing import SigningKey
from secure_mor.errors import ConfigError

PARTIES = {"server": "server", "keyholder": "keyholder", "clients/alice": "client:alice"}


def cert(root: Path, party: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((root / party / "tls" / "party.crt").read_bytes())


def usages(certificate: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def sans(certificate: x509.Certificate) -> list[str]:
    try:
        ext = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return ext.get_values_for_type(x509.DNSName) + [str(ip) for ip in ext.get_values_for_type(x509.IPAddress)]


def test_every_certificate_is_p256_signed_by_the_ca_with_its_identity(federation: Federation) -> None:
    root = federation.root
    ca = x509.load_pem_x509_certificate((root / "ca" / "ca.crt").read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for party, identity in PARTIES.items():
        certificate = cert(root, party)
        certificate.verify_directly_issued_by(ca)
        assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == identity
        assert isinstance(certificate.public_key(), ec.EllipticCurvePublicKey)
        assert certificate.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
        assert not certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert certificate.not_valid_after_utc > ca.not_valid_before_utc
        assert (root / party / "tls" / "ca.crt").read_bytes() == (root / "ca" / "ca.crt").read_bytes()


def test_key_usages_and_subject_alternative_names_fit_each_role(federation: Federation) -> None:
    root = federation.root
    server, keyholder, alice = (cert(root, p) for p in PARTIES)
    assert usages(server) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert usages(keyholder) == {ExtendedKeyUsageOID.SERVER_AUTH}
    assert usages(alice) == {ExtendedKeyUsageOID.CLIENT_AUTH}
    assert {"localhost", "127.0.0.1", "::1"} <= set(sans(keyholder))
    assert sans(alice) == []


def test_hosts_become_dns_or_ip_sans(tmp_path: Path) -> None:
    federation = create_federation(
        tmp_path / "fed",
        ["a", "b"],
        server_hosts=["mor.example.org", "10.0.0.5"],
        keyholder_hosts=["kh.example.org"],
    )
    server = cert(federation.root, "server")
    ext = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ext.get_values_for_type(x509.DNSName) == ["mor.example.org"]
    assert ext.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.5")]
    config = load_config(
        FederationConfig, federation.root / "clients" / "a" / "client.toml", table="federation"
    )
    assert config.server_address == "mor.example.org:50050"
    assert config.keyholder_address == "kh.example.org:50051"


def test_private_keys_are_0600_and_folders_0700(federation: Federation) -> None:
    root = federation.root
    private = [root / "ca" / "ca.key"]
    for party in PARTIES:
        private += [root / party / "tls" / "party.key", root / party / "signing" / "ed25519.key"]
        assert stat.S_IMODE((root / party).stat().st_mode) == 0o700
    for path in private:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_trust_files_pin_the_right_signing_keys(federation: Federation) -> None:
    root = federation.root

    def public(party: str, identity: str) -> str:
        return SigningKey.load(identity, root / party / "signing" / "ed25519.key").public.to_text()

    alice_trust = load_trust(root / "clients" / "alice" / "trust.toml")
    assert set(alice_trust) == {"server", "keyholder"}
    assert alice_trust["keyholder"].to_text() == public("keyholder", "keyholder")
    keyholder_trust = load_trust(root / "keyholder" / "trust.toml")
    assert set(keyholder_trust) == {"server", "client:alice", "client:bob", "client:carol"}
    assert keyholder_trust["client:bob"].to_text() == public("clients/bob", "client:bob")
    assert (root / "clients/bob/signing/ed25519.pub").read_text().strip() == public(
        "clients/bob", "client:bob"
    )


def test_the_keyholder_config_has_secure_defaults(federation: Federation) -> None:
    config = load_config(KeyholderConfig, federation.root / "keyholder" / "keyholder.toml")
    assert (config.policy.k_min, config.policy.w_max) == (2, 0.75)
    assert config.policy.allowed_identities == ("server", "client:alice", "client:bob", "client:carol")
    assert config.ckks.total_bits == 200
    assert config.federation.tls.key == federation.root / "keyholder" / "tls" / "party.key"
    assert not config.policy.insecure


@pytest.mark.parametrize(
    ("table", "key", "value", "message"),
    [
        ("policy", "w_max", 1.5, "policy.w_max: expected a number in (0, 1]"),
        ("policy", "k_min", 0, "policy.k_min"),
        ("ckks", "coeff_mod_bit_sizes", [60, 60, 60, 60], "ckks.coeff_mod_bit_sizes: 240 bits"),
        ("service", "max_message_bytes", 10, "service.max_message_bytes"),
        ("policy", "k_mn", 2, "policy.k_mn: unknown field"),
    ],
)
def test_bad_keyholder_config_values_name_file_and_field(
    federation: Federation, tmp_path: Path, table: str, key: str, value: object, message: str
) -> None:
    document = tomllib.loads((federation.root / "keyholder" / "keyholder.toml").read_text())
    document[table][key] = value
    path = tmp_path / "keyholder.toml"
    path.write_text(tomli_w.dumps(document))
    with pytest.raises(ConfigError, match=r"keyholder\.toml") as info:
        load_config(KeyholderConfig, path)
    assert message in str(info.value)


def test_init_refuses_to_overwrite_a_kit_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "fed"
    create_federation(out, ["a", "b"])
    old = (out / "ca" / "ca.crt").read_bytes()
    with pytest.raises(KitError, match="--force"):
        create_federation(out, ["a", "b"])
    assert (out / "ca" / "ca.crt").read_bytes() == old
    create_federation(out, ["c", "d"], force=True)
    assert (out / "ca" / "ca.crt").read_bytes() != old
    assert not (out / "clients" / "a").exists()


def test_the_cli_writes_kits_and_never_prints_a_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "fed"
    assert main(["init", str(out), "--clients", "alice,bob"]) == 0
    printed = capsys.readouterr().out
    assert "client:bob" in printed
    assert "PRIVATE KEY" not in printed
    for key in out.rglob("*.key"):
        assert key.read_text().splitlines()[1] not in printed
    assert tomllib.loads((out / "server" / "server.toml").read_text())["federation"]["identity"] == "server"
    assert main(["init", str(out), "--clients", "alice,bob"]) == 2
    error = capsys.readouterr().err
    assert "already holds a federation kit" in error
    assert "Traceback" not in error
    assert main(["init", str(tmp_path / "x"), "--clients", "Bad Name"]) == 2
    assert "client name 'Bad Name'" in capsys.readouterr().err


def test_keyholder_serve_reports_a_bad_config_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keyholder", "serve", "--config", str(tmp_path / "missing.toml")]) == 2
    error = capsys.readouterr().err
    assert "config file not found" in error
    assert "Traceback" not in error
