"""The key holder's frozen config: the ``keyholder.toml`` of its startup kit.

Tables: ``[federation]`` (identity, mTLS files, signing key, trust file), ``[service]`` (listen address,
message bounds), ``[policy]`` (the decryption policy), ``[ckks]`` (parameters), ``[storage]`` (secret
context, decryption log, service log). Relative paths resolve against the config file's folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from secure_mor.config import help_field, nested, require
from secure_mor.crypto.ckks import CkksParams
from secure_mor.crypto.kit import KEYHOLDER_IDENTITY, SERVER_IDENTITY, FederationConfig


@dataclass(frozen=True)
class PolicyConfig:
    """What the key holder agrees to decrypt (see SECURITY.md, "Policy knobs")."""

    k_min: int = help_field(2, "Fewest signed contributors a fused vector must have; below 2 is insecure.")
    w_max: float = help_field(
        0.75, "Largest router weight any contributor may have in any row; 1.0 allows single-client rows."
    )
    server_identity: str = help_field(SERVER_IDENTITY, "The only identity allowed to call DecryptAggregate.")
    allowed_identities: tuple[str, ...] = help_field(
        (SERVER_IDENTITY,), "Certificate CNs allowed to call the service at all (GetPublicContext)."
    )
    max_values: int = help_field(65536, "Largest number of values (rollouts) in one DecryptAggregate.")

    def __post_init__(self) -> None:
        require(
            self.k_min >= 1, "k_min", f"expected an integer ≥ 1 (2 or more is secure), found {self.k_min}"
        )
        require(0.0 < self.w_max <= 1.0, "w_max", f"expected a number in (0, 1], found {self.w_max}")
        require(
            self.server_identity in self.allowed_identities,
            "allowed_identities",
            f"must contain server_identity {self.server_identity!r}",
        )
        require(self.max_values >= 1, "max_values", f"expected an integer ≥ 1, found {self.max_values}")

    @property
    def insecure(self) -> bool:
        """Whether the policy lets one client's scores through (k_min < 2 or w_max = 1)."""
        return self.k_min < 2 or self.w_max >= 1.0


@dataclass(frozen=True)
class ServiceConfig:
    """The gRPC endpoint."""

    listen: str = help_field("0.0.0.0:50051", "host:port to listen on (mTLS only).")
    max_message_bytes: int = help_field(
        16 * 1024 * 1024, "Largest gRPC message accepted or sent (a ciphertext of 4,096 values ≈ 330 KB)."
    )
    workers: int = help_field(4, "Threads serving requests.")

    def __post_init__(self) -> None:
        require(":" in self.listen, "listen", f"expected host:port, found {self.listen!r}")
        require(
            1 << 20 <= self.max_message_bytes <= 1 << 30,
            "max_message_bytes",
            f"expected 1 MiB to 1 GiB, found {self.max_message_bytes}",
        )
        require(1 <= self.workers <= 64, "workers", f"expected 1–64, found {self.workers}")


@dataclass(frozen=True)
class StorageConfig:
    """Where the key holder keeps its secrets and logs."""

    secret_context: Path = help_field(
        Path("ckks/secret_context.bin"), "CKKS secret context (0600); generated on first start when missing."
    )
    decryption_log: Path = help_field(Path("logs/decryptions.jsonl"), "Signed hash-chained decryption log.")
    service_log: Path = help_field(Path("logs/service.log"), "Service log: starts, refusals, errors.")


@dataclass(frozen=True)
class KeyholderConfig:
    """The key holder's whole config."""

    federation: FederationConfig = field(
        default_factory=lambda: FederationConfig(identity=KEYHOLDER_IDENTITY),
        metadata={"help": "Identity, mTLS files, signing key, trust."},
    )
    service: ServiceConfig = nested(ServiceConfig, "The gRPC endpoint.")
    policy: PolicyConfig = nested(PolicyConfig, "The decryption policy.")
    ckks: CkksParams = nested(CkksParams, "CKKS parameters (128-bit secure).")
    storage: StorageConfig = nested(StorageConfig, "Secret context and logs.")

    def __post_init__(self) -> None:
        require(
            self.federation.identity == KEYHOLDER_IDENTITY,
            "federation.identity",
            f"the key holder's identity must be {KEYHOLDER_IDENTITY!r}, found {self.federation.identity!r}",
        )
