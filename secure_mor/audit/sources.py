"""Finding what to audit under the given paths: signed logs, pinned signing keys, key-holder policies.

A path may be a run or kit folder (searched recursively) or a log file. Signing keys come from the kits:
each ``trust.toml`` (``[signing_keys]``) and each party's ``signing/ed25519.pub`` next to a config whose
``[federation] identity`` names it. Every source must agree on every identity's key; a disagreement is
itself a finding (someone swapped a key). A ``.jsonl`` file whose first line is a signed-log entry is a
log; its first entry's ``kind`` says whether it is a privacy ledger, a decryption log or a server run's
anchors log (``secure_mor.anchors``). A folder with a ``secure_steps.csv`` is a server run folder; one
without ``anchors.jsonl`` beside it was written before anchors existed, and is noted as such.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from secure_mor.anchors import ANCHORS_FILE
from secure_mor.anchors import KINDS as ANCHOR_KINDS
from secure_mor.audit.findings import Finding, Status
from secure_mor.crypto.errors import CryptoError
from secure_mor.crypto.signing import VerifyKey
from secure_mor.errors import SecureMorError

LEDGER_KINDS = frozenset({"dp_training_run", "non_private_run"})
DECRYPTION_KINDS = frozenset({"decryption"})
LOG_FIELDS = frozenset({"seq", "prev", "author", "time", "kind", "payload", "sig"})
STEPS_FILE = "secure_steps.csv"
"""A server run folder's per-step table: its presence marks a run folder."""


class AuditInputError(SecureMorError):
    """The audit's input is unusable (missing path, nothing to audit, garbage, no keys): exit status 2."""


@dataclass(frozen=True)
class FoundLog:
    """A signed log found under the paths, with what it is and, for a ledger, whose kit it sits in."""

    path: Path
    role: str  # "privacy_ledger" | "decryption_log" | "server_anchors" | "unknown"
    owner: str | None


@dataclass(frozen=True)
class AuditInputs:
    """Everything gathered before any check runs."""

    logs: tuple[FoundLog, ...]
    keys: Mapping[str, VerifyKey]
    key_findings: tuple[Finding, ...]
    policies: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    ckks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    kits: Mapping[str, Path] = field(default_factory=dict)
    """Identity → the folder of its kit, for every party whose kit is among the inputs."""
    runs_without_anchors: tuple[Path, ...] = ()
    """Server run folders (a ``secure_steps.csv``) with no ``anchors.jsonl``: made before anchors existed."""


def gather(paths: Iterable[Path]) -> AuditInputs:
    """Collect logs, keys and policies under ``paths``; ``AuditInputError`` when nothing usable is there."""
    paths = list(paths)
    for path in paths:
        if not path.exists():
            raise AuditInputError(f"{path}: no such file or folder")
    configs = [c for p in paths for c in _files(p, "*.toml") if c.name != "trust.toml"]
    identities = {c.parent: ident for c in configs if (ident := _identity(c)) is not None}
    keys, key_findings = _keys(paths, identities)
    logs = tuple(_classify(log, identities) for p in paths for log in _logs(p))
    if not logs:
        raise AuditInputError(
            f"no signed logs found under {', '.join(map(str, paths))}: pass a run or kit folder, or log files"
        )
    if not keys:
        raise AuditInputError(
            "no pinned signing keys found: pass the federation kit folder along with the logs"
        )
    policies, ckks = {}, {}
    for config in configs:
        table = _toml(config)
        if isinstance(table.get("policy"), dict):
            policies[str(config)] = table["policy"]
        if isinstance(table.get("ckks"), dict):
            ckks[str(config)] = table["ckks"]
    old_runs = tuple(
        steps.parent
        for p in paths
        for steps in _files(p, STEPS_FILE)
        if not (steps.parent / ANCHORS_FILE).exists()
    )
    return AuditInputs(
        logs=logs,
        keys=keys,
        key_findings=key_findings,
        policies=policies,
        ckks=ckks,
        kits={identity: folder for folder, identity in identities.items()},
        runs_without_anchors=old_runs,
    )


def _files(path: Path, pattern: str) -> list[Path]:
    if path.is_file():
        return [path] if path.match(pattern) else []
    return sorted(p for p in path.rglob(pattern) if p.is_file())


def _toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise AuditInputError(f"{path}: not a readable TOML file ({error})") from None


def _identity(config: Path) -> str | None:
    federation = _toml(config).get("federation")
    identity = federation.get("identity") if isinstance(federation, dict) else None
    return identity if isinstance(identity, str) and identity else None


def _keys(
    paths: list[Path], identities: Mapping[Path, str]
) -> tuple[dict[str, VerifyKey], tuple[Finding, ...]]:
    seen: dict[str, tuple[str, str]] = {}  # identity -> (key text, where it came from)
    findings: list[Finding] = []

    def pin(identity: str, text: str, where: str) -> None:
        if identity in seen and seen[identity][0] != text:
            findings.append(
                Finding(
                    "keys.consistent",
                    Status.FAIL,
                    identity,
                    f"two different signing keys for {identity!r}: {seen[identity][1]} and {where}",
                    where,
                )
            )
        seen.setdefault(identity, (text, where))

    for folder, identity in identities.items():
        own = folder / "signing" / "ed25519.pub"
        if own.is_file():
            pin(identity, own.read_text(encoding="utf-8").strip(), str(own))
    for path in paths:
        for trust in _files(path, "trust.toml"):
            table = _toml(trust).get("signing_keys", {})
            if not isinstance(table, dict):
                raise AuditInputError(f"{trust}: expected a [signing_keys] table")
            for identity, text in sorted(table.items()):
                if not isinstance(text, str):
                    raise AuditInputError(f"{trust}: signing_keys.{identity} must be a base64 string")
                pin(identity, text, str(trust))
    keys: dict[str, VerifyKey] = {}
    for identity, (text, where) in seen.items():
        try:
            keys[identity] = VerifyKey.from_text(identity, text)
        except CryptoError as error:
            raise AuditInputError(f"{where}: {error}") from None
    if not findings and keys:
        findings.append(
            Finding("keys.consistent", Status.PASS, "kit", f"{len(keys)} identities, one key each")
        )
    return keys, tuple(findings)


def _logs(path: Path) -> list[Path]:
    if path.is_file():
        if _first_entry(path) is None:
            raise AuditInputError(f"{path}: not a secure-mor signed log (its first line is not a log entry)")
        return [path]
    return [p for p in _files(path, "*.jsonl") if _first_entry(p) is not None]


def _first_entry(path: Path) -> dict[str, Any] | None:
    try:
        with path.open("rb") as file:
            first = file.readline(1 << 20)
        entry = json.loads(first)
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return entry if isinstance(entry, dict) and set(entry) == LOG_FIELDS else None


def _classify(path: Path, identities: Mapping[Path, str]) -> FoundLog:
    first = _first_entry(path) or {}
    kind = first.get("kind")
    role = (
        "privacy_ledger"
        if kind in LEDGER_KINDS
        else "decryption_log"
        if kind in DECRYPTION_KINDS
        else "server_anchors"
        if kind in ANCHOR_KINDS
        else "unknown"
    )
    owner = next((identities[folder] for folder in path.parents if folder in identities), None)
    return FoundLog(path=path, role=role, owner=owner)
