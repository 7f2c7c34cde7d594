"""``Auditor``: the offline privacy-budget and decryption audit behind ``secure-mor audit``.

It trusts nothing but the pinned signing keys in the kits: it verifies every signed hash-chained log
(signatures, chain links, order, gaps, duplicates, torn lines), recomputes each client's ε from the
recorded DP events with the PRV and RDP accountants, checks the claims and the budgets, checks every
decryption against the key holder's policy and the CKKS parameters against the 128-bit bound, checks
the server runs' anchors against the key holder's log and the clients' ledgers (are they whole?,
``secure_mor.audit.anchors``), and returns an ``AuditReport``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from secure_mor.audit import anchors, checks
from secure_mor.audit.findings import AuditReport, ClientPrivacy, DecryptionSummary, Finding, Status
from secure_mor.audit.sources import AuditInputError, AuditInputs, FoundLog, gather
from secure_mor.crypto.errors import LogIntegrityError
from secure_mor.crypto.signed_log import LogEntry, read_log

KEYHOLDER = "keyholder"
SERVER = "server"
ROLES = ("privacy_ledger", "decryption_log", "server_anchors", "unknown")


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
        verified: list[tuple[FoundLog, tuple[LogEntry, ...]]] = []
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
            if entries is not None:
                verified.append((found, entries))
        of_role = {role: [(f, e) for f, e in verified if f.role == role] for role in ROLES}
        for found, entries in of_role["server_anchors"]:
            findings += checks.single_author(str(found.path), entries, found.owner or SERVER)
        records, more = anchors.collect([(str(f.path), e) for f, e in of_role["server_anchors"]])
        findings += more
        clients = self._clients(of_role["privacy_ledger"], inputs, records, findings)
        decryptions = self._decryptions(of_role["decryption_log"], inputs, records, findings)
        for found, _ in of_role["unknown"]:
            findings.append(Finding("log.kind", Status.WARN, str(found.path), "a signed log of unknown kind"))
        findings += anchors.runs_without_anchors(inputs.runs_without_anchors)
        return AuditReport(
            paths=tuple(map(str, paths)),
            strict=self.strict,
            findings=tuple(findings),
            clients=tuple(clients),
            decryptions=tuple(decryptions),
            logs=tuple(logs),
        )

    def _clients(
        self,
        ledgers: list[tuple[FoundLog, tuple[LogEntry, ...]]],
        inputs: AuditInputs,
        records: anchors.AnchorRecords,
        findings: list[Finding],
    ) -> list[ClientPrivacy]:
        """Each verified ledger's ε and budget, and each announced head against its client's ledger."""
        by_owner = {self._owner(f, e): (str(f.path), e) for f, e in ledgers}
        unverified = frozenset(
            f.owner for f in inputs.logs if f.role == "privacy_ledger" and f.owner and f.owner not in by_owner
        )
        kits = {i: folder for i, folder in inputs.kits.items() if i.startswith("client:")}
        announced, completeness = anchors.ledger_completeness(
            records, by_owner, kits, inputs.keys, unverified
        )
        clients = []
        for found, entries in ledgers:
            summary, more = self._ledger(found, entries, announced.get(self._owner(found, entries)))
            clients.append(summary)
            findings += more
        findings += completeness
        return clients

    def _decryptions(
        self,
        logs: list[tuple[FoundLog, tuple[LogEntry, ...]]],
        inputs: AuditInputs,
        records: anchors.AnchorRecords,
        findings: list[Finding],
    ) -> list[DecryptionSummary]:
        """Each verified decryption log against the policy, and against the server runs' anchors."""
        summaries = []
        for found, entries in logs:
            findings += checks.single_author(str(found.path), entries, found.owner or KEYHOLDER)
            summary, more = checks.decryptions(str(found.path), entries, inputs.policies)
            summaries.append(summary)
            findings += more
        broken = len(logs) < sum(f.role == "decryption_log" for f in inputs.logs)
        findings += anchors.decryption_completeness(
            records, [(str(f.path), e) for f, e in logs], inputs.kits.get(KEYHOLDER), unverified=broken
        )
        return summaries

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

    @staticmethod
    def _owner(found: FoundLog, entries: tuple[LogEntry, ...]) -> str:
        """Whose ledger this is: the identity of the kit it lies in, else its first entry's author."""
        return found.owner or (entries[0].author if entries else "unknown")

    def _ledger(
        self, found: FoundLog, entries: tuple[LogEntry, ...], announced_seq: int | None
    ) -> tuple[ClientPrivacy, list[Finding]]:
        owner = self._owner(found, entries)
        findings = checks.single_author(str(found.path), entries, owner)
        summary, more = checks.ledger(str(found.path), owner, entries, self.budgets.get(owner), announced_seq)
        return summary, findings + more
