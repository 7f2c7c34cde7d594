"""``Auditor``: the offline privacy-budget and decryption audit behind ``secure-mor audit``.

It trusts nothing but the pinned signing keys in the kits: it verifies every signed hash-chained log
(signatures, chain links, order, gaps, duplicates, torn lines), recomputes each client's ε from the
recorded DP events with the PRV and RDP accountants, checks the claims and the budgets, checks every
decryption against the key holder's policy and the CKKS parameters against the 128-bit bound, and
returns an ``AuditReport``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from secure_mor.audit import checks
from secure_mor.audit.findings import AuditReport, ClientPrivacy, DecryptionSummary, Finding, Status
from secure_mor.audit.sources import AuditInputError, AuditInputs, FoundLog, gather
from secure_mor.crypto.errors import LogIntegrityError
from secure_mor.crypto.signed_log import LogEntry, read_log

KEYHOLDER = "keyholder"


def load_budgets(path: Path) -> dict[str, float]:
    """Budgets from a TOML file's ``[budgets]`` table: identity (``client:alice``) or name = ε."""
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8")).get("budgets")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise AuditInputError(f"{path}: not a readable TOML file ({error})") from None
    if not isinstance(table, dict) or not table:
        raise AuditInputError(
            f'{path}: expected a [budgets] table of identity = ε, e.g. "client:alice" = 3.0'
        )
    budgets = {}
    for name, value in table.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise AuditInputError(f"{path}: budgets.{name}: expected a number ≥ 0, found {value!r}")
        budgets[name if ":" in name else f"client:{name}"] = float(value)
    return budgets


@dataclass(frozen=True)
class Auditor:
    """Audits run and kit folders or log files; ``budgets`` (identity → ε) override recorded budgets."""

    budgets: Mapping[str, float] = field(default_factory=dict)
    strict: bool = False

    def run(self, paths: Iterable[Path]) -> AuditReport:
        """Gather the inputs under ``paths`` and check everything; ``AuditInputError`` if unusable."""
        paths = list(paths)
        inputs = gather(paths)
        findings = list(inputs.key_findings)
        clients: list[ClientPrivacy] = []
        decryptions: list[DecryptionSummary] = []
        logs = []
        for found in inputs.logs:
            entries = self._verified(found, inputs, findings)
            logs.append(
                {
                    "path": str(found.path),
                    "role": found.role,
                    "entries": None if entries is None else len(entries),
                }
            )
            if entries is None:
                continue
            if found.role == "privacy_ledger":
                summary, more = self._ledger(found, entries)
                clients.append(summary)
                findings += more
            elif found.role == "decryption_log":
                findings += checks.single_author(str(found.path), entries, found.owner or KEYHOLDER)
                summary_d, more = checks.decryptions(str(found.path), entries, inputs.policies)
                decryptions.append(summary_d)
                findings += more
            else:
                findings.append(
                    Finding("log.kind", Status.WARN, str(found.path), "a signed log of unknown kind")
                )
        return AuditReport(
            paths=tuple(map(str, paths)),
            strict=self.strict,
            findings=tuple(findings),
            clients=tuple(clients),
            decryptions=tuple(decryptions),
            logs=tuple(logs),
        )

    def _verified(
        self, found: FoundLog, inputs: AuditInputs, findings: list[Finding]
    ) -> tuple[LogEntry, ...] | None:
        try:
            entries = read_log(found.path, inputs.keys)
        except LogIntegrityError as error:
            location = str(error).split(": ", 1)[0]
            findings.append(Finding("log.integrity", Status.FAIL, str(found.path), str(error), location))
            return None
        findings.append(
            Finding(
                "log.integrity",
                Status.PASS,
                str(found.path),
                f"{len(entries)} entries: chain and signatures verify",
            )
        )
        return entries

    def _ledger(self, found: FoundLog, entries: tuple[LogEntry, ...]) -> tuple[ClientPrivacy, list[Finding]]:
        owner = found.owner or (entries[0].author if entries else "unknown")
        findings = checks.single_author(str(found.path), entries, owner)
        summary, more = checks.ledger(str(found.path), owner, entries, self.budgets.get(owner))
        return summary, findings + more
